//! The MQTT control plane against a private mosquitto: commands through the real `ctl`,
//! authentication, health and wills, broker outages, TLS, and the README's figures.

mod auth;
mod commands;
mod health;
mod measure;
mod outage;
mod tls;
