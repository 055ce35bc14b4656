//! The tenant portal's acceptance tests in a real browser (headless Debian Chromium over
//! WebDriver, `e2e::browser`), against the whole mesh started in process as the other
//! end-to-end tests start it. One binary of its own, so its browsers do not share the two cores
//! with the `it` suite's meshes more than they must.
//!
//! - `harness`: the browser kit itself (axe-core finds what it must, viewports, screenshots).

mod harness;
