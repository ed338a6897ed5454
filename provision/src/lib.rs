//! provision: the seed exercise's Datadog objects as code. [`resources`] declares them (the exact API
//! bodies), [`api`] talks to Datadog, [`apply`] converges Datadog to them or removes them, and
//! [`snapshot`] posts a graph snapshot of my_metric in an event.

pub mod api;
pub mod apply;
pub mod resources;
pub mod snapshot;
