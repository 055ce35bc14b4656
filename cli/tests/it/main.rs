//! The CLI's integration tests, one binary (linking one binary per file dominated CI time):
//! `up` drives `neurosphere up` and the operator commands as a new user would; `deploy` checks
//! the deployment files against the settings catalog.

mod deploy;
mod up;
