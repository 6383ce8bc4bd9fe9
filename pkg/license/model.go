package license

import (
	"fmt"
	"strings"
)

// Model is the kind of appliance a PBX runs on.
type Model string

// The models whose keys the agent activates. Cloud PBXs are activated by the
// portal itself and never see a key.
const (
	ModelHW Model = "WPBX-HW"
	ModelVM Model = "WPBX-VM"
)

// Valid reports whether m is a model the agent handles.
func (m Model) Valid() bool { return m == ModelHW || m == ModelVM }

// ParseModel accepts a model name case-insensitively.
func ParseModel(s string) (Model, error) {
	switch m := Model(strings.ToUpper(strings.TrimSpace(s))); m {
	case ModelHW, ModelVM:
		return m, nil
	}
	return "", fmt.Errorf("unknown model %q: use %s or %s", s, ModelHW, ModelVM)
}

// Term is the billing term of a PBX.
type Term string

// The billing terms.
const (
	Monthly  Term = "monthly"
	Yearly   Term = "yearly"
	Lifetime Term = "lifetime"
)

// Valid reports whether t is a known term.
func (t Term) Valid() bool { return t == Monthly || t == Yearly || t == Lifetime }

// ParseTerm accepts a term name case-insensitively.
func ParseTerm(s string) (Term, error) {
	switch t := Term(strings.ToLower(strings.TrimSpace(s))); t {
	case Monthly, Yearly, Lifetime:
		return t, nil
	}
	return "", fmt.Errorf("unknown term %q: use %s, %s or %s", s, Monthly, Yearly, Lifetime)
}
