//! Integration tests of the service, hermetic: the real router, telemetry and exporter, an in-test
//! trace agent on loopback, no Python and no network.

#[path = "../common/agent.rs"]
mod agent;
mod fault_values;
mod faults_flags;
mod filters;
mod helpers;
mod hostile;
mod limits;
mod log_fields;
mod logs;
mod propagation;
mod routes;
mod spans;
mod visits;
