// Bytes for a link that did not come from a `Request`.
use device_protocols::zk::RequestBytes;

fn main() {
    let _ = RequestBytes(vec![18, 0, 0, 0, 1, 0, 1, 0]);
}
