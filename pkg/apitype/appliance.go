package apitype

// ApplianceStatus is the machine the agent runs on, as partners report it
// to their Area Manager.
type ApplianceStatus struct {
	Serial string `json:"serial,omitempty"`
	// SerialSource is where Serial came from: "identity.serial" (the
	// configuration), "dmi", or "unknown (why)" when there is none.
	SerialSource string `json:"serial_source"`
}
