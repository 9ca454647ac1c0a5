"""The ground floor: errors, logging, data paths, secrets scrubbing, wheel names, file reads.

Imports nothing else of ciwheels."""
