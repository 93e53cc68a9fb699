//! Media model: packets, codec header inspection, GOP cache, timestamp normaliser.
