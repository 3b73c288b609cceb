//! Fixtures shared by the black-box tests.
#![allow(dead_code)]

pub mod broker_process;
pub mod console;
pub mod engine;
pub mod mosquitto;
