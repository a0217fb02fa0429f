//! The agent binary as a user meets it: the demo, and signals on a running agent.

mod demo;
mod lifecycle;
