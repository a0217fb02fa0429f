//! The agent binary as a user meets it: the demo, signals on a running agent, and a running
//! agent joined to an emulated terminal and the upstream double.

mod demo;
mod hostile;
mod lifecycle;
mod site;
