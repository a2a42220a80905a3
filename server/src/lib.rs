//! The flowscope server. So far: the `flowscope tap` command, which runs
//! the collectors ([`collect`]) per the configuration ([`config`]) and prints
//! their observations ([`tap`]).

pub mod collect;
pub mod config;
pub mod correlator;
pub mod signals;
pub mod tap;
