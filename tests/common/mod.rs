//! Fixtures shared by the black-box tests.
#![expect(dead_code, reason = "each test uses part of the fixtures")]

pub mod broker_process;
pub mod console;
pub mod engine;
pub mod mosquitto;
