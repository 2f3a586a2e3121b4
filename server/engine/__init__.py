"""Engine: turning a block range into records. Imports the transport and the base modules, nothing above."""
