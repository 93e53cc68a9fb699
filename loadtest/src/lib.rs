//! Load harness for livego-rs, nginx-rtmp and livego: generates test media, starts the server
//! under test, runs native publishers and RTMP/HTTP-FLV players in one process, checks every
//! player's stream and reports throughput, server CPU and RSS, time to first frame and latency.

pub mod check;
pub mod flvparse;
pub mod latency;
pub mod media;
pub mod ports;
pub mod proc_stats;
pub mod report;
pub mod run;
pub mod server;
pub mod swarm;
