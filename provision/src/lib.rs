//! provision: the seed exercise's Datadog objects as code. [`resources`] declares them (the exact API
//! bodies), [`api`] talks to Datadog, [`site`] decides where the keys may go, [`apply`] converges
//! Datadog to them or removes them, and [`snapshot`] posts a graph snapshot of my_metric in an event.

pub mod api;
pub mod apply;
pub mod resources;
pub mod site;
pub mod snapshot;
