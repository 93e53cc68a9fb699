//! Acknowledgement bookkeeping: the receiver of a Window Acknowledgement Size must send an
//! Acknowledgement carrying the total bytes received so far each time another window arrived.

/// Tracks received bytes against the window the peer announced.
#[derive(Debug, Clone, Default)]
pub struct AckWindow {
    received: u64,
    last_acked: u64,
    window: Option<u32>,
}

impl AckWindow {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts bytes read from the peer (handshake included, as the spec counts every byte).
    pub fn received(&mut self, n: usize) {
        self.received += n as u64;
    }

    pub fn total(&self) -> u64 {
        self.received
    }

    /// The peer's Window Acknowledgement Size; 0 disables acknowledgements.
    pub fn set_window(&mut self, size: u32) {
        self.window = (size > 0).then_some(size);
    }

    /// Sequence number to acknowledge now (cumulative, wrapping at 2^32), if a window is due.
    pub fn due(&mut self) -> Option<u32> {
        let w = u64::from(self.window?);
        if self.received - self.last_acked >= w {
            self.last_acked = self.received;
            Some(self.received as u32)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_cumulative_count_per_window() {
        let mut a = AckWindow::new();
        a.received(5000);
        assert_eq!(a.due(), None, "no window announced");
        a.set_window(1000);
        assert_eq!(a.due(), Some(5000));
        a.received(999);
        assert_eq!(a.due(), None);
        a.received(1);
        assert_eq!(a.due(), Some(6000));
        a.set_window(0);
        a.received(10_000);
        assert_eq!(a.due(), None);
    }

    #[test]
    fn sequence_number_wraps() {
        let mut a = AckWindow::new();
        a.set_window(1 << 31);
        a.received(1 << 31);
        assert_eq!(a.due(), Some(1 << 31));
        a.received(1 << 31);
        a.received(10);
        assert_eq!(a.due(), Some(10));
        assert_eq!(a.total(), (1 << 32) + 10);
    }
}
