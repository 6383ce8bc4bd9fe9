package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"reflect"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/pbx-agent/pbx-agent/agent"
)

// app holds what every verb shares: the standard streams and the
// persistent flags.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	configPath string
	root       *cobra.Command
}

func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:           "pbx-agent",
		Short:         "Licence agent of a PBX",
		Long:          "pbx-agent activates a PBX with its portal, enforces its per-user licences and applies what the portal pushes.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	a.root = root
	pf := root.PersistentFlags()
	pf.StringVar(&a.configPath, "config", agent.DefaultConfigPath, "configuration `FILE`")
	pf.String("socket", "", "local API socket `PATH` (overrides listen.socket)")
	root.AddCommand(newRunCmd(a), newHelperCmd(a), newVersionCmd(a), newKeyCmd(a), newActivateCmd(a), newStatusCmd(a), newRefreshCmd(a))
	root.AddCommand(newAuditCmd(a))
	root.AddCommand(newCheckCmd(a))
	root.AddCommand(newSSHCmd(a))
	root.AddCommand(docCommands(a)...)
	return root
}

// config loads the configuration: defaults, then the file, then PBX_AGENT_*
// variables, then flags. A missing file is fine when it is the default one,
// so the CLI works before the package is configured.
func (a *app) config() (agent.Config, error) {
	v := viper.New()
	setDefaults(v, "", reflect.ValueOf(agent.DefaultConfig()))
	v.SetEnvPrefix("PBX_AGENT")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	if err := v.BindPFlag("listen.socket", a.root.PersistentFlags().Lookup("socket")); err != nil {
		return agent.Config{}, err
	}

	v.SetConfigFile(a.configPath)
	v.SetConfigType("yaml")
	if err := v.ReadInConfig(); err != nil {
		explicit := a.root.PersistentFlags().Changed("config")
		if explicit || !errors.Is(err, fs.ErrNotExist) {
			return agent.Config{}, fmt.Errorf("reading config %s: %w", a.configPath, err)
		}
	}
	var cfg agent.Config
	if err := v.UnmarshalExact(&cfg); err != nil {
		return agent.Config{}, fmt.Errorf("config %s: %w", a.configPath, err)
	}
	if err := cfg.Validate(); err != nil {
		return agent.Config{}, err
	}
	return cfg, nil
}

// setDefaults registers every key of the config struct with its default,
// which is also what lets viper find PBX_AGENT_* variables for each key.
func setDefaults(v *viper.Viper, prefix string, val reflect.Value) {
	t := val.Type()
	for i := range t.NumField() {
		key := prefix + t.Field(i).Tag.Get("mapstructure")
		if f := val.Field(i); f.Kind() == reflect.Struct {
			setDefaults(v, key+".", f)
		} else {
			v.SetDefault(key, f.Interface())
		}
	}
}
