//! Helpers shared by the test suites that run the release binary.
pub mod agent;
pub mod ddapm;
pub mod mariadb;
pub mod service;
