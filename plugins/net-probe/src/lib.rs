//! Test fixture: a plugin that tries to open a TCP connection.
//!
//! Hookgate links `wasi:sockets`, because the standard libraries of many
//! languages import it, but refuses every address. `decide` connects to
//! config `addr` and reports the refusal as a failure that quotes the
//! error; should it ever connect, it denies, so a sandbox with a network
//! cannot go unnoticed.

use std::net::TcpStream;

use hookgate_sdk::{Decide, Event, Failure, Verdict};

struct NetProbe;

impl Decide for NetProbe {
    fn decide(_event: Event) -> Result<Verdict, Failure> {
        let addr = hookgate_sdk::config_or("addr", "127.0.0.1:9");
        match TcpStream::connect(&addr) {
            Ok(_) => Ok(Verdict::deny(format!(
                "net-probe connected to {addr}: the sandbox has a network"
            ))),
            Err(error) => Err(Failure::new(
                "no-network",
                format!("could not connect to {addr}: {error}"),
            )),
        }
    }
}

hookgate_sdk::export!(NetProbe: Decide);
