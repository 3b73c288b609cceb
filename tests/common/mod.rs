//! Fixtures shared by the black-box tests.
#![allow(dead_code)]

pub mod engine;
pub mod mosquitto;
