//! The long-running operations' URLs: the `Azure-AsyncOperation` status resource and the
//! `Location` result (FACTS §2).

use serde_json::{Value, json};

use super::call::ArmCall;
use super::model::PROVIDER;
use super::reply::Reply;
use super::state::{OpKind, OpStatus, Operation};
use super::util::{rfc3339, set_path};

impl ArmCall<'_> {
    fn find_op(&self, sub: &str, op_id: &str) -> Result<&Operation, Reply> {
        self.st
            .operations
            .get(op_id)
            .filter(|op| op.sub.eq_ignore_ascii_case(sub))
            .ok_or_else(|| {
                Reply::arm_error(
                    404,
                    "NotFound",
                    format!("The operation '{op_id}' was not found."),
                )
            })
    }

    pub(crate) fn operation_status(&self, sub: &str, op_id: &str) -> Reply {
        let op = match self.find_op(sub, op_id) {
            Ok(op) => op,
            Err(reply) => return reply,
        };
        let mut body = json!({
            "id": format!("/subscriptions/{}/providers/{PROVIDER}/locations/{}/operations/{}", op.sub, op.location, op.id),
            "name": op.id,
            "status": op.status.as_str(),
            "startTime": rfc3339(op.started),
        });
        if let Some(ended) = op.ended {
            set_path(&mut body, "endTime", Value::from(rfc3339(ended)));
            set_path(&mut body, "percentComplete", Value::from(100.0));
        }
        if let Some(error) = &op.error {
            set_path(&mut body, "error", error.clone());
        }
        let reply = Reply::json(200, body);
        if op.status == OpStatus::InProgress {
            self.with_retry_after(reply)
        } else {
            reply
        }
    }

    pub(crate) fn operation_result(&self, sub: &str, op_id: &str) -> Reply {
        let op = match self.find_op(sub, op_id) {
            Ok(op) => op,
            Err(reply) => return reply,
        };
        match op.status {
            OpStatus::InProgress => self
                .with_retry_after(Reply::empty(202))
                .header("Location", self.result_url(&op.sub, &op.location, &op.id)),
            OpStatus::Failed | OpStatus::Canceled => {
                let error = op.error.clone().unwrap_or_else(
                    || json!({"code": "OperationFailed", "message": "The operation failed."}),
                );
                let status = if op.status == OpStatus::Canceled {
                    409
                } else {
                    400
                };
                Reply::json(status, json!({ "error": error }))
            }
            OpStatus::Succeeded => match op.kind {
                OpKind::Put => match self.st.get(&op.resource_key) {
                    Some(res) => Reply::json(200, res.body.clone()),
                    None => Reply::empty(204),
                },
                OpKind::Delete | OpKind::RegenerateKey { .. } | OpKind::ComputeState(_) => {
                    Reply::empty(200)
                }
            },
        }
    }
}
