//! The tenant portal's acceptance tests in a real browser (headless Debian Chromium over
//! WebDriver, `e2e::browser`), against the whole mesh started in process as the other
//! end-to-end tests start it. One binary of its own, so its browser does not share the two
//! cores with the `it` suite's meshes more than it must; within it, one mesh and one browser
//! serve every test in turn (`kit`), each test on tenants of its own.
//!
//! - `harness`: the browser kit itself (axe-core finds what it must, viewports, screenshots).
//! - `sign_in`: invitation, password, sign-in and sign-out; cookie shape and rotation; the
//!   throttle.
//! - `forms`: forms without their CSRF token or from another origin change nothing.
//! - `isolation`: tenant B opening tenant A's URLs gets 404 and nothing of A.
//! - `journey`: greeting and slider saved -> the next call uses the greeting -> erase -> sign out.
//! - `pages`: axe-core on every page at both widths; staff and owner pages.
//! - `player`: a recorded call plays on its page (duration known, playback advances, "Play
//!   from" seeks); a call and its message each play; the messages inbox passes axe-core at
//!   both widths and marks a message done.
//! - `signup`: sign-up -> the mailed link -> the waiting page -> approval -> a number searched
//!   and bought from the fake Twilio -> a signed call to it reaches the new tenant; axe-core on
//!   the sign-up, waiting and number pages.
//! - `screenshots`: the README's pictures (ignored; `scripts/screenshots.sh` runs it).

mod forms;
mod harness;
mod isolation;
mod journey;
mod kit;
mod pages;
mod player;
mod screenshots;
mod sign_in;
mod signup;
