//! The text form of the IR: printed for people and snapshots, parsed back exactly.
