//! The agent binary as a user meets it: the demo, signals on a running agent, and a running
//! agent joined to an emulated terminal and the upstream double.

mod alerts;
mod backups;
mod common;
mod demo;
mod esl;
mod guard;
mod hostile;
mod lifecycle;
mod live;
mod locks;
mod mappings;
mod memory;
mod punches;
mod recompress;
mod salvage;
mod site;
mod site_day;
mod socket;
mod value_files;
mod zk_conflicts;
mod zk_live;
mod zk_punches;
mod zk_restore;
mod zk_templates;
