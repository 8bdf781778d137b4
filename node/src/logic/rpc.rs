//! `Service::Logic`: what comets and jobs ask of logic (goim's logic gRPC service), each
//! answered after the corresponding Raft command committed.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use goim_net::quic::{serve_unary, BiStream, StreamHandler};
use goim_net::rpc::logic::{AuthBody, Connected, HistoryPage, LogicReply, LogicRequest, LogicResult};
use goim_net::rpc::RpcError;
use goim_raft::command::{
    AcquireLease, ChangeRoom, CommitOffset, Connect, Disconnect, PushTo, ReleaseLease, RenewOnline, Resync,
    Write,
};
use goim_raft::WriteError;
use goim_storage::tables::sessions::{self, Session};

use super::{Logic, Message};
use crate::clock::now_ms;

pub struct LogicService(pub Arc<Logic>);

impl StreamHandler for LogicService {
    fn handle(self: Arc<Self>, stream: BiStream) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(serve_unary(
            stream,
            "logic",
            move |req: LogicRequest| async move { self.0.serve(req).await },
        ))
    }
}

/// A refused command is the caller's to see; anything else means "try another node or later".
fn rpc_error(e: WriteError) -> RpcError {
    match e {
        WriteError::Rejected(why) => RpcError::Rejected(why),
        WriteError::Fatal(m) => RpcError::Unavailable(format!("raft: {m}")),
        other => RpcError::Unavailable(other.to_string()),
    }
}

impl Logic {
    async fn write<C: Write>(&self, cmd: C) -> Result<C::Out, RpcError> {
        self.cluster.propose(cmd).await.map_err(rpc_error)
    }

    pub async fn serve(&self, req: LogicRequest) -> LogicResult {
        match req {
            LogicRequest::Connect { comet, conn, ip, auth } => self.connect(comet, conn, ip, auth).await,
            LogicRequest::Disconnect { comet, key, conn } => {
                self.write(Disconnect { comet, key, conn }).await?;
                Ok(LogicReply::Done)
            }
            LogicRequest::ChangeRoom { comet, key, conn, room } => {
                if room.contains('\0') {
                    return Err(RpcError::Rejected("room_id must not contain NUL".into()));
                }
                let cmd = ChangeRoom { comet, key, conn, room, ts_ms: now_ms() };
                Ok(LogicReply::Joined(self.write(cmd).await?))
            }
            LogicRequest::History { room, after, until, limit } => {
                let limit = usize::try_from(limit).unwrap_or(usize::MAX);
                let h = self
                    .history(&room, after, until, limit)
                    .await
                    .map_err(|e| RpcError::Unavailable(e.to_string()))?;
                Ok(LogicReply::History(HistoryPage {
                    epoch: h.epoch,
                    last_seq: h.last_seq,
                    records: h.records,
                }))
            }
            LogicRequest::RenewOnline { comet, rooms, conn_count, ip_count } => {
                let cmd = RenewOnline {
                    comet,
                    rooms,
                    conn_count,
                    ip_count,
                    now_ms: now_ms(),
                    ttl_ms: self.comet_ttl_ms,
                };
                let online = self.write(cmd).await?;
                Ok(match online.known {
                    true => LogicReply::RoomCounts(online.counts),
                    false => LogicReply::Reregistered(online.counts),
                })
            }
            LogicRequest::Resync { comet, sessions } => {
                Ok(LogicReply::Stale(self.write(Resync { comet, sessions, now_ms: now_ms() }).await?))
            }
            LogicRequest::Receive { id, key, mid, body, .. } => self.receive(&id, key, mid, body).await,
            LogicRequest::Comets => {
                self.comet_infos().map(LogicReply::Comets).map_err(|e| RpcError::Unavailable(e.to_string()))
            }
            LogicRequest::AcquireLease { partition, job, ttl_ms } => {
                let cmd = AcquireLease { partition, job, now_ms: now_ms(), ttl_ms };
                Ok(LogicReply::Lease(self.write(cmd).await?))
            }
            LogicRequest::ReleaseLease { partition, job } => {
                self.write(ReleaseLease { partition, job }).await?;
                Ok(LogicReply::Done)
            }
            LogicRequest::CommitOffset { partition, job, seq } => {
                Ok(LogicReply::Offset(self.write(CommitOffset { partition, job, seq }).await?))
            }
        }
    }

    async fn connect(&self, comet: String, conn: u64, ip: String, auth: AuthBody) -> LogicResult {
        if auth.room_id.contains('\0') || auth.key.contains('\0') {
            return Err(RpcError::Rejected("key and room_id must not contain NUL".into()));
        }
        let key = if auth.key.is_empty() { new_key() } else { auth.key.clone() };
        let session = Session {
            key: key.clone(),
            mid: auth.mid,
            comet,
            conn,
            room: auth.room_id.clone(),
            accepts: auth.accepts.clone(),
            platform: auth.platform.clone(),
            ip,
            connected_ms: now_ms(),
        };
        let joined = self.write(Connect { session }).await?;
        Ok(LogicReply::Connected(Connected {
            key,
            mid: auth.mid,
            room_id: auth.room_id,
            accepts: auth.accepts,
            heartbeat_secs: self.heartbeat_secs,
            room_seq: joined.room_seq,
            epoch: joined.epoch,
        }))
    }

    /// Chat mode: an uplink message is pushed to the sender's room, tagged with its mid;
    /// `id` makes a retried call (the comet failing over to another logic node) apply once.
    async fn receive(&self, id: &str, key: String, mid: i64, body: bytes::Bytes) -> LogicResult {
        if self.chat_op == 0 {
            return Err(RpcError::Rejected("uplink messages are not routed on this cluster".into()));
        }
        let room = match sessions::get(&self.cluster.view, &key) {
            Ok(Some(s)) if !s.room.is_empty() => s.room,
            Ok(_) => return Err(RpcError::Rejected("not in a room".into())),
            Err(e) => return Err(RpcError::Unavailable(e.to_string())),
        };
        let msg = serde_json::json!({ "mid": mid, "msg": String::from_utf8_lossy(&body) });
        let msg = Message {
            to: PushTo::Room(room),
            op: self.chat_op,
            body: msg.to_string().into(),
            key: Some(id.to_owned()),
        };
        let pushed = self.push(msg).await.map_err(rpc_error)?;
        Ok(LogicReply::Pushed { seq: pushed.seq })
    }
}

/// A fresh connection key: 128 random bits, hex.
fn new_key() -> String {
    format!("{:032x}", rand::random::<u128>())
}
