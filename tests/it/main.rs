//! The integration-test binary: drives `bwb` as a user would, on fixture data in temporary
//! project roots, with a clean environment.

mod cli;
mod common;
mod download;
mod hub_server;
mod prepare;
