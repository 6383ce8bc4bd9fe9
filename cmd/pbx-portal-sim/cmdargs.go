package main

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// commandArgs lets the verb of `command` come anywhere among its words:
// `command NAME ssh-close`, `command --portal URL NAME ssh-close` and
// `command ssh-close NAME --portal URL` all mean `command ssh-close NAME`.
// It moves the first word that is a verb of `command` right after it,
// skipping flags and their values (taken from root's flag definitions, so
// a flag's value is never mistaken for the PBX or the verb). Arguments
// that do not run `command` are returned as they are; with no verb, the
// `command` command itself refuses them.
func commandArgs(root *cobra.Command, args []string) []string {
	cmd, _, err := root.Find([]string{"command"})
	if err != nil || cmd == root {
		return args
	}
	takesValue := func(c *cobra.Command, tok string) bool {
		name, _, hasValue := strings.Cut(strings.TrimLeft(tok, "-"), "=")
		if hasValue || tok == "--" {
			return false
		}
		var f *pflag.Flag
		for _, fs := range []*pflag.FlagSet{c.Flags(), c.InheritedFlags(), root.PersistentFlags()} {
			if strings.HasPrefix(tok, "--") {
				f = fs.Lookup(name)
			} else if len(name) == 1 {
				f = fs.ShorthandLookup(name)
			}
			if f != nil {
				break
			}
		}
		return f != nil && f.NoOptDefVal == ""
	}
	// positionals returns the indexes of args[from:]'s words that are not
	// flags or flag values, as the flags of c read them.
	positionals := func(c *cobra.Command, from int) []int {
		var out []int
		for i := from; i < len(args); i++ {
			a := args[i]
			switch {
			case a == "--":
				for j := i + 1; j < len(args); j++ {
					out = append(out, j)
				}
				return out
			case strings.HasPrefix(a, "-") && len(a) > 1:
				if takesValue(c, a) {
					i++
				}
			default:
				out = append(out, i)
			}
		}
		return out
	}
	pos := positionals(root, 0)
	if len(pos) == 0 || args[pos[0]] != "command" {
		return args
	}
	at := pos[0]
	verbs := map[string]*cobra.Command{}
	for _, sub := range cmd.Commands() {
		verbs[sub.Name()] = sub
	}
	// Every flag of every verb may appear before the verb is known.
	all := &cobra.Command{Use: "all"}
	all.Flags().AddFlagSet(root.PersistentFlags())
	for _, sub := range verbs {
		all.Flags().AddFlagSet(sub.Flags())
	}
	for _, i := range positionals(all, at+1) {
		if verbs[args[i]] == nil {
			continue
		}
		if i == at+1 {
			return args
		}
		out := make([]string, 0, len(args))
		out = append(out, args[:at+1]...)
		out = append(out, args[i])
		out = append(out, args[at+1:i]...)
		return append(out, args[i+1:]...)
	}
	return args
}
