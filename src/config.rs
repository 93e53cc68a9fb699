//! Configuration: livego.toml, flags with livego names, UPPER_SNAKE env overrides.
