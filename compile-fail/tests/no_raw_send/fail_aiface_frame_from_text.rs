// A hand-written text frame cannot become an outgoing frame.
use device_protocols::aiface::OutgoingFrame;

fn main() {
    let _ = OutgoingFrame::from(r#"{"cmd":"deleteuser","enrollid":7,"backupnum":13}"#);
    let _ = OutgoingFrame(String::from(r#"{"cmd":"cleanuser"}"#));
}
