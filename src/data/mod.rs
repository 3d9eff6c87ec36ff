//! Data: the one `Example` record, the hub download, raw readers and `prepare`.

pub mod context;
pub mod download;
pub mod example;
pub mod prepare;
pub mod raw;
pub mod sample;
pub mod tasks;

pub use example::{Answer, Example, Span};
