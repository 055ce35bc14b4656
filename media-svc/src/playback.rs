//! Playback: `CallService.ReadRecording` and the `Call.recording(s)` of `GetCall` / `ListCalls`.
//!
//! A recording is found through its call (and, when the request names one, by its id among
//! that call's recordings), in the caller's tenant only (RLS and the tenant's
//! transaction): an unknown call, another tenant's and a call without a recording are the same
//! NOT_FOUND. The bytes come from the reader of [`crate::recording`] (the WAV decrypted and
//! decoded on the fly, from the spool or the object store) and leave in messages of at most
//! [`CHUNK`] bytes; each message says the whole file's size, so a client can answer an HTTP
//! range request with a `Content-Range` from the first one.

use std::ops::Range;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt as _};
use mesh::api::media::ReadRecordingResponse;
use prost::bytes::Bytes;
use tonic::Status;

use crate::error::MediaError;
use crate::recording::RecordingId;
use crate::runtime::Runtime;
use crate::store::playback as sql;
use mesh::domain::{CallSid, CustomerId};

/// Largest `data` of one ReadRecording message.
pub const CHUNK: usize = 64 * 1024;

/// The recordings' media type.
pub const CONTENT_TYPE: &str = "audio/wav";

/// The bytes a request asks for of a file of `total` bytes: from `offset`, `length` bytes (to the
/// end when unset), cut at the end of the file. An offset past the end is OUT_OF_RANGE (an
/// offset exactly at the end reads nothing).
pub fn span(total: u64, offset: u64, length: Option<u64>) -> Result<Range<u64>, Status> {
    if offset > total {
        return Err(Status::out_of_range(format!(
            "offset {offset} is past the end of the recording ({total} bytes)"
        )));
    }
    let end = length.map_or(total, |n| offset.saturating_add(n).min(total));
    Ok(offset..end)
}

/// The messages of one read: `data` (the reader's stream over `range`) cut into pieces of at
/// most [`CHUNK`] bytes, each with the file's size and its own offset, never past
/// `range.end`. The first message always comes, with no data when the range is empty. A
/// reader failure ends the stream with its status.
pub fn messages<S>(
    total: u64,
    range: Range<u64>,
    data: S,
) -> BoxStream<'static, Result<ReadRecordingResponse, Status>>
where
    S: Stream<Item = Result<Bytes, MediaError>> + Send + 'static,
{
    let message = move |offset: u64, data: Bytes| ReadRecordingResponse {
        total_bytes: total,
        content_type: CONTENT_TYPE.to_owned(),
        offset,
        data,
    };
    if range.is_empty() {
        return futures::stream::once(async move { Ok(message(range.start, Bytes::new())) })
            .boxed();
    }
    let end = range.end;
    data.scan(range.start, move |at, piece| {
        let out: Vec<Result<ReadRecordingResponse, Status>> = match piece {
            Err(e) => {
                // The end of this read: nothing follows an error.
                *at = end;
                vec![Err(Status::from(e))]
            }
            Ok(mut piece) => {
                let room = usize::try_from(end.saturating_sub(*at)).unwrap_or(usize::MAX);
                piece.truncate(room);
                let mut out = Vec::with_capacity(piece.len().div_ceil(CHUNK));
                while !piece.is_empty() {
                    let part = piece.split_to(piece.len().min(CHUNK));
                    let len = part.len() as u64;
                    out.push(Ok(message(*at, part)));
                    *at += len;
                }
                out
            }
        };
        futures::future::ready(Some(out))
    })
    .map(futures::stream::iter)
    .flatten()
    .take_while({
        let mut failed = false;
        move |m| {
            let go = !failed;
            failed |= m.is_err();
            futures::future::ready(go)
        }
    })
    .boxed()
}

/// `ReadRecording`: a recording of `call_sid` in `customer`'s tenant (the one with id
/// `recording_id`, else the call's first), from `offset`, `length` bytes (to the end when
/// unset), as messages of at most [`CHUNK`] bytes. An id that is not one of this call's
/// recordings in this tenant is NOT_FOUND, like an unknown call.
pub async fn read(
    rt: &Runtime,
    customer: CustomerId,
    call_sid: &CallSid,
    recording_id: Option<uuid::Uuid>,
    offset: u64,
    length: Option<u64>,
) -> Result<BoxStream<'static, Result<ReadRecordingResponse, Status>>, Status> {
    let recording = rt
        .db
        .tenant_tx(customer, async |tx| match recording_id {
            Some(id) => sql::by_id(tx, call_sid, id).await,
            None => Ok(sql::of_call(tx, call_sid).await?.into_iter().next()),
        })
        .await?
        .ok_or(MediaError::NotFound)?;
    if !recording.is_complete() {
        return Err(MediaError::FailedPrecondition(
            "the call is still being recorded; its recording can be read when it has ended".into(),
        )
        .into());
    }
    let wav = rt
        .recordings
        .wav(customer, RecordingId(recording.id))
        .await?;
    let total = wav.len();
    let range = span(total, offset, length)?;
    metrics::counter!("media_recording_reads_total").increment(1);
    Ok(messages(total, range.clone(), wav.read(range)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_is_cut_at_the_end_and_an_offset_past_it_is_out_of_range() {
        assert_eq!(span(100, 0, None).unwrap(), 0..100);
        assert_eq!(span(100, 10, Some(5)).unwrap(), 10..15);
        assert_eq!(span(100, 90, Some(50)).unwrap(), 90..100);
        assert_eq!(span(100, 90, Some(u64::MAX)).unwrap(), 90..100);
        assert_eq!(span(100, 100, None).unwrap(), 100..100);
        assert_eq!(span(100, 0, Some(0)).unwrap(), 0..0);
        assert_eq!(
            span(100, 101, None).unwrap_err().code(),
            tonic::Code::OutOfRange
        );
    }

    fn collect(
        total: u64,
        range: Range<u64>,
        pieces: Vec<Result<Bytes, MediaError>>,
    ) -> Vec<Result<ReadRecordingResponse, Status>> {
        futures::executor::block_on(
            messages(total, range, futures::stream::iter(pieces)).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn messages_hold_at_most_64_kib_with_their_offsets_and_the_size() {
        let file: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let range = 1_000..190_000u64;
        // The reader's pieces, of sizes unrelated to the chunk.
        let wanted = Bytes::from(file[1_000..190_000].to_vec());
        let pieces = vec![
            Ok(wanted.slice(..100_000)),
            Ok(wanted.slice(100_000..100_010)),
            Ok(wanted.slice(100_010..)),
        ];
        let got = collect(200_000, range.clone(), pieces);
        let mut joined = Vec::new();
        let mut at = range.start;
        for m in got {
            let m = m.expect("no error");
            assert!(m.data.len() <= CHUNK && !m.data.is_empty());
            assert_eq!(
                (m.total_bytes, m.content_type.as_str()),
                (200_000, "audio/wav")
            );
            assert_eq!(m.offset, at);
            at += m.data.len() as u64;
            joined.extend_from_slice(&m.data);
        }
        assert_eq!(joined, &file[1_000..190_000]);
    }

    #[test]
    fn an_empty_range_is_one_message_and_a_reader_never_sends_past_the_range() {
        let got = collect(500, 500..500, vec![]);
        assert_eq!(got.len(), 1);
        let m = got[0].as_ref().unwrap();
        assert_eq!((m.total_bytes, m.offset, m.data.len()), (500, 500, 0));

        let got = collect(500, 0..10, vec![Ok(Bytes::from(vec![7u8; 50]))]);
        let sent: usize = got.iter().map(|m| m.as_ref().unwrap().data.len()).sum();
        assert_eq!(sent, 10);
    }

    #[test]
    fn a_reader_error_ends_the_stream_with_its_status() {
        let got = collect(
            500,
            0..500,
            vec![
                Ok(Bytes::from(vec![1u8; 10])),
                Err(MediaError::Internal("decrypt".into())),
                Ok(Bytes::from(vec![1u8; 10])),
            ],
        );
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].as_ref().unwrap_err().code(), tonic::Code::Internal);
    }
}
