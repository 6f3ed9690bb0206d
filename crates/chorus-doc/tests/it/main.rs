//! Integration tests of chorus-doc's public API (one binary, modules per topic).

mod cursor;
mod events;
mod golden;
mod history;
mod hostile;
mod text;
mod types;
mod undo;
