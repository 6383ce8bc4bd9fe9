package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/pbx-agent/pbx-agent/agent"
)

// Exit codes of config check.
const exitConfigProblems = 1 // the configuration has problems, listed

func newConfigCmd(a *app) *cobra.Command {
	cfg := &cobra.Command{Use: "config", Short: "Work with the configuration file"}
	cfg.AddCommand(&cobra.Command{
		Use:   "check",
		Short: "Check the configuration and list every problem",
		Long: "Loads the configuration as the daemon does (the file of --config, then the environment)\n" +
			"and lists every problem at once, one a line, each naming its key and the fix: unknown keys\n" +
			"(a misspelt portal.ulr), impossible values, and what the daemon needs to reach its portal\n" +
			"(portal.url, the portal keyring, the appliance's model). Like sshd -t, for after an edit.\n\n" +
			"Exit status:\n" +
			"     0  the configuration is fine (\"OK\" on stdout)\n" +
			"     1  it has problems, listed on stdout\n" +
			"     2  it could not be checked",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.configCheck()
		},
	})
	return cfg
}

func (a *app) configCheck() error {
	v, known, err := a.readConfig()
	if err != nil {
		fmt.Fprintln(a.stdout, err)
		return &codedError{code: exitConfigProblems, err: fmt.Errorf("%s: cannot be read", a.configPath)}
	}
	cfg, problems := decodeConfig(v, known, os.Environ())
	// Then what the daemon would lack to reach its portal: it starts
	// without, but can neither activate nor heartbeat. A key already
	// refused is not refused twice.
	for _, sp := range agent.SetupProblems(cfg, "/", time.Now().UTC()) {
		if !slices.ContainsFunc(problems, func(p error) bool {
			var ce *agent.ConfigError
			return errors.As(p, &ce) && related(ce.Key, sp.Key)
		}) {
			problems = append(problems, sp)
		}
	}
	for _, p := range problems {
		fmt.Fprintln(a.stdout, p)
	}
	if len(problems) > 0 {
		return &codedError{code: exitConfigProblems, err: fmt.Errorf("%s: %d %s", a.configPath, len(problems), plural(len(problems), "problem", "problems"))}
	}
	_, err = fmt.Fprintf(a.stdout, "%s: OK\n", a.configPath)
	return err
}

// config loads the configuration, or says what is wrong with it: every
// problem, on one line (the daemon's start-up error).
func (a *app) config() (agent.Config, error) {
	cfg, problems := a.loadConfig()
	switch len(problems) {
	case 0:
		return cfg, nil
	case 1:
		return agent.Config{}, problems[0]
	}
	msgs := make([]string, len(problems))
	for i, p := range problems {
		msgs[i] = p.Error()
	}
	return agent.Config{}, fmt.Errorf("%d problems in the configuration (pbx-agent config check lists them): %s", len(problems), strings.Join(msgs, "; "))
}

// loadConfig loads the configuration: defaults, then the file, then
// PBX_AGENT_* variables, then flags. A missing file is fine when it is
// the default one, so the CLI works before the package is configured. It
// returns every problem found, not the first.
func (a *app) loadConfig() (agent.Config, []error) {
	v, known, err := a.readConfig()
	if err != nil {
		return agent.Config{}, []error{err}
	}
	return decodeConfig(v, known, os.Environ())
}

// readConfig reads the configuration's sources, and returns every key
// and section of the configuration with its type.
func (a *app) readConfig() (*viper.Viper, map[string]reflect.Type, error) {
	v := viper.New()
	known := map[string]reflect.Type{}
	setDefaults(v, "", reflect.ValueOf(agent.DefaultConfig()), known)
	v.SetEnvPrefix("PBX_AGENT")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	if err := v.BindPFlag("listen.socket", a.root.PersistentFlags().Lookup("socket")); err != nil {
		return nil, nil, err
	}
	v.SetConfigFile(a.configPath)
	v.SetConfigType("yaml")
	if err := v.ReadInConfig(); err != nil {
		explicit := a.root.PersistentFlags().Changed("config")
		if explicit || !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("reading config %s: %w", a.configPath, err)
		}
	}
	return v, known, nil
}

// decodeConfig decodes what v read and lists every problem: unknown keys
// of the file and of environ's PBX_AGENT_* variables, values of the wrong
// type, then what Validate refuses.
func decodeConfig(v *viper.Viper, known map[string]reflect.Type, environ []string) (agent.Config, []error) {
	var problems []error
	keys := v.AllKeys()
	slices.Sort(keys)
	for _, key := range keys {
		if _, ok := known[key]; !ok {
			problems = append(problems, unknownKey(key, known))
		}
	}
	problems = append(problems, unknownVariables(environ, known)...)
	var cfg agent.Config
	decodeErr := v.Unmarshal(&cfg)
	var badType []string
	for _, de := range decodeErrors(decodeErr) {
		badType = append(badType, de.Name())
		problems = append(problems, &agent.ConfigError{Key: de.Name(),
			Err: fmt.Errorf("config %s: %v is not valid here (%v): %s", de.Name(), v.Get(de.Name()), errors.Unwrap(de), want(de.Name(), known))})
	}
	if decodeErr != nil && len(badType) == 0 { // not a decoding error of a key: say it as it is
		problems = append(problems, fmt.Errorf("config %s: %w", v.ConfigFileUsed(), decodeErr))
	}
	// A value that did not decode left its zero, which Validate would
	// refuse again: one problem per key.
	var ce *agent.ConfigError
	for _, err := range unjoin(cfg.Validate()) {
		if errors.As(err, &ce) && slices.ContainsFunc(badType, func(k string) bool { return related(k, ce.Key) }) {
			continue
		}
		problems = append(problems, err)
	}
	return cfg, problems
}

// setDefaults registers every key of the config struct with its default,
// which is also what lets viper find PBX_AGENT_* variables for each key,
// and records each key and section with its type in known.
func setDefaults(v *viper.Viper, prefix string, val reflect.Value, known map[string]reflect.Type) {
	t := val.Type()
	for i := range t.NumField() {
		key := prefix + t.Field(i).Tag.Get("mapstructure")
		f := val.Field(i)
		known[key] = f.Type()
		if f.Kind() == reflect.Struct {
			setDefaults(v, key+".", f, known)
		} else {
			v.SetDefault(key, f.Interface())
		}
	}
}

// unknownKey is the problem of a key no setting has, with the known keys
// it is likely a typo of.
func unknownKey(key string, known map[string]reflect.Type) error {
	var near []string
	last := key[strings.LastIndex(key, ".")+1:]
	for k, t := range known {
		if t.Kind() == reflect.Struct {
			continue
		}
		if editDistance(key, k) <= 2 || strings.HasSuffix(k, "."+last) && !strings.Contains(key, ".") {
			near = append(near, k)
		}
	}
	slices.Sort(near)
	fix := "remove it (every key is listed in the agent.yaml the package installs)"
	if len(near) > 0 {
		fix = "did you mean " + strings.Join(near, " or ") + "?"
	}
	return &agent.ConfigError{Key: key, Err: fmt.Errorf("config %s: unknown key: %s", key, fix)}
}

// envPrefix starts the variable of each key: PBX_AGENT_PORTAL_URL sets
// portal.url. PBX_AGENT_TEST_* are the test builds' own, not keys.
const envPrefix, envTestPrefix = "PBX_AGENT_", "PBX_AGENT_TEST_"

// envName is the variable that sets key.
func envName(key string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// unknownVariables are the problems of PBX_AGENT_* variables that set no
// key, which viper would ignore: a typo in a unit's Environment= would
// leave its setting at the default, unsaid.
func unknownVariables(environ []string, known map[string]reflect.Type) []error {
	names := map[string]bool{}
	for k, t := range known {
		if t.Kind() != reflect.Struct {
			names[envName(k)] = true
		}
	}
	var out []error
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix) || strings.HasPrefix(name, envTestPrefix) || names[name] {
			continue
		}
		var near []string
		for n := range names {
			if editDistance(name, n) <= 2 {
				near = append(near, n)
			}
		}
		slices.Sort(near)
		fix := "unset it"
		if len(near) > 0 {
			fix = "did you mean " + strings.Join(near, " or ") + "?"
		}
		out = append(out, &agent.ConfigError{Key: name, Err: fmt.Errorf("environment %s: sets no configuration key: %s", name, fix)})
	}
	slices.SortFunc(out, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return out
}

// want says what a key takes, from the type of its setting.
func want(key string, known map[string]reflect.Type) string {
	t := known[key]
	if t == nil {
		return "see the agent.yaml the package installs"
	}
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "want a duration such as 30s, 5m or 1h"
	case t.Kind() == reflect.Struct:
		var sub []string
		for k := range known {
			if strings.HasPrefix(k, key+".") && !strings.Contains(k[len(key)+1:], ".") {
				sub = append(sub, k)
			}
		}
		slices.Sort(sub)
		return "it is a section: put its keys under it (" + strings.Join(sub, ", ") + ")"
	case t.Kind() == reflect.Slice:
		return "want a list, e.g. [a, b]"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "want a whole number"
	case t.Kind() == reflect.Bool:
		return "want true or false"
	}
	return "want a string"
}

// related reports whether two keys are one, or one is a section of the
// other.
func related(a, b string) bool {
	return a == b || strings.HasPrefix(a, b+".") || strings.HasPrefix(b, a+".")
}

// keyError is mapstructure's error of one key: Name is the key.
type keyError interface {
	error
	Name() string
}

// decodeErrors finds the errors of each key that did not decode, in the
// tree of errors mapstructure joins.
func decodeErrors(err error) []keyError {
	var out []keyError
	var walk func(error)
	walk = func(err error) {
		if n, ok := err.(keyError); ok {
			out = append(out, n)
			return
		}
		switch e := err.(type) {
		case interface{ Unwrap() []error }:
			for _, err := range e.Unwrap() {
				walk(err)
			}
		case interface{ Unwrap() error }:
			walk(e.Unwrap())
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

// unjoin is the errors joined in err.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
