use std::rc::Rc;
use std::sync::Arc;

use crate::media::Packet;

/// Something the owner shard feeds with every packet of a publish session, in order and with
/// normalised timestamps: the HLS segmenter, the FLV recorder, static pushes. A sink must not
/// block: anything slow (disk, network) goes through its own queue.
pub trait StreamSink {
    fn on_packet(&mut self, packet: &Packet);
    /// The publish session ended (publisher left or was taken over).
    fn on_end(&mut self);
}

/// The publish session a set of sinks is made for.
#[derive(Clone, Debug)]
pub struct PublishInfo {
    /// `app/room`
    pub key: Arc<str>,
    pub app: String,
    pub room: String,
}

/// Makes the sinks of a new publish session (called on the owner shard at publish start).
pub type SinkFactory = Rc<dyn Fn(&PublishInfo) -> Vec<Box<dyn StreamSink>>>;
