//! Integration tests of chorus-doc's public API (one binary, modules per topic).

mod golden;
mod hostile;
mod text;
