//! `LISTEN` on a dedicated connection: [`Db::listen`] and the [`Notifications`] it returns
//! (tenant-svc's routing cache empties itself on `NOTIFY`).

use std::fmt;

use tokio_postgres::NoTls;

use super::{Db, DbError};

impl Db {
    /// Opens a dedicated connection (same settings as the pool, outside it) that `LISTEN`s on
    /// `channels`, and returns the notifications it receives. The receiver yields `None` once the
    /// connection is gone (server restart, network): the caller must then assume it missed
    /// notifications and listen again. Channel names are identifiers chosen by the code, never
    /// by a client (they are quoted, not bound).
    pub async fn listen(&self, channels: &[&str]) -> Result<Notifications, DbError> {
        let (client, mut connection) = self.config.connect(NoTls).await?;
        // At most this many notifications wait for the consumer; past it the listener reports an
        // overflow (`Notice::Overflow`) instead of growing without bound.
        const BACKLOG: usize = 1024;
        let (tx, rx) = tokio::sync::mpsc::channel(BACKLOG);
        let task = tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = futures::StreamExt::next(&mut messages).await {
                let notice = match message {
                    Ok(tokio_postgres::AsyncMessage::Notification(n)) => Notice::Notification {
                        channel: n.channel().to_owned(),
                        payload: n.payload().to_owned(),
                    },
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(error = %DbError::from(e), "listening database connection failed");
                        break;
                    }
                };
                match tx.try_send(notice) {
                    Ok(()) => {}
                    Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                        // The consumer is behind: it is told once and must treat everything as
                        // changed; the connection ends so that it listens afresh.
                        let _ = tx.send(Notice::Overflow).await;
                        break;
                    }
                    Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => break,
                }
            }
        });
        let listen: String = channels
            .iter()
            .map(|c| format!("LISTEN \"{}\";", c.replace('"', "\"\"")))
            .collect();
        if let Err(e) = client.batch_execute(&listen).await {
            task.abort();
            return Err(e.into());
        }
        Ok(Notifications {
            rx,
            _client: client,
            task,
        })
    }
}

/// What a [`Notifications`] stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A `NOTIFY` on one of the channels.
    Notification {
        /// The channel.
        channel: String,
        /// The payload (may be empty).
        payload: String,
    },
    /// Notifications arrived faster than they were taken: some were dropped. The stream ends
    /// right after this.
    Overflow,
}

/// Notifications from [`Db::listen`]. Dropping it closes the connection.
pub struct Notifications {
    rx: tokio::sync::mpsc::Receiver<Notice>,
    /// Kept alive: dropping the client would end the session and its LISTENs.
    _client: tokio_postgres::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Notifications {
    /// The next notification; `None` once the connection is gone (notifications may have been
    /// missed: listen again and treat everything as changed).
    pub async fn recv(&mut self) -> Option<Notice> {
        self.rx.recv().await
    }
}

impl Drop for Notifications {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for Notifications {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifications").finish_non_exhaustive()
    }
}
