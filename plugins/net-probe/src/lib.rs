//! Test fixture: a plugin that tries to open a TCP connection.
//!
//! Its only purpose is that the component imports `wasi:sockets`, which
//! Hookgate must refuse at upload. Should it ever run, `decide` denies when
//! the connection succeeds, so a sandbox with a network cannot go unnoticed.

use std::net::TcpStream;

use hookgate_sdk::{Event, Failure, Plugin, Verdict};

struct NetProbe;

impl Plugin for NetProbe {
    fn decide(_event: Event) -> Result<Verdict, Failure> {
        Ok(match TcpStream::connect("127.0.0.1:9") {
            Ok(_) => Verdict::deny("net-probe connected to 127.0.0.1:9: the sandbox has a network"),
            Err(error) => {
                hookgate_sdk::info!("net-probe could not connect to 127.0.0.1:9: {error}");
                Verdict::allow()
            }
        })
    }
}

hookgate_sdk::export!(NetProbe);
