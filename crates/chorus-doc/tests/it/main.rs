//! Integration tests of chorus-doc's public API (one binary, modules per topic).

mod events;
mod golden;
mod hostile;
mod smoke_types;
mod text;
