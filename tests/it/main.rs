//! End-to-end tests for Hookgate, in one test binary.
//!
//! - `plugins`: every example and hostile plugin through the real runtime;
//! - `cli`: the `hookgate plugin` commands, run as a real process;
//! - `contract`: which hooks a plugin exports, and contract 0.1.0 plugins;
//! - `languages`: the Python and JavaScript examples on a real server;
//! - `api`, `events`, `restart`, `delivery`, `openapi`: the real server on
//!   port 0 with a temp data dir, and real receivers on 127.0.0.1;
//! - `queue`: several deliverers sharing one store, as nodes share a database;
//! - `store`: what each backend promises of its plugin records;
//! - `cluster`: several `hookgate serve` processes on one PostgreSQL.
//!
//! Tests written with `backend_test!` run on sled and on PostgreSQL (see
//! `backends`).

mod api;
mod backends;
mod cli;
mod cluster;
mod console;
mod contract;
mod delivery;
mod events;
mod fixtures;
mod helpers;
mod languages;
mod openapi;
mod openapi_schema;
mod plugins;
mod queue;
mod restart;
mod serve;
mod store;
