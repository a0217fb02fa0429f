//! What the emulated terminal holds: users and attendance records, generated deterministically
//! so a test can recompute exactly what any client should read back.

use super::time::to_zk;
use crate::sim::clock::CalendarTime;
use crate::zk::dataset::dataset_of;
use crate::zk::layout::RecordLayout;
use crate::zk::{
    AttendanceLayout, AttendanceRecord, DeviceSizes, DeviceText, FaceSizes, FingerTemplate,
    TextCodec, TimeZones, UserId, UserLayout, UserRecord, ZkTime,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The first generated attendance timestamp: 2024-03-01 08:00:00 device local time.
const FIRST_PUNCH: CalendarTime = CalendarTime {
    year: 2024,
    month: 3,
    day: 1,
    hour: 8,
    minute: 0,
    second: 0,
};

/// Fingerprint capacity reported in the sizes (a typical TFT terminal's).
const FINGERPRINT_CAPACITY: u32 = 3000;

/// Why a user write was refused, mirroring firmware's `USER_WRQ` rules.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteRefusal {
    /// Record length differs from the device's layout.
    WrongLength,
    /// Empty or "0" user id.
    InvalidUserId,
    /// The user id belongs to another uid (firmware puts 1 in the session field).
    UserIdConflict,
    /// The uid is taken by another user id (a uid's user id cannot be changed).
    UidTaken,
    /// The device is full.
    Full,
}

/// What to generate.
#[derive(Clone, Copy)]
pub struct Shape {
    /// Number of users (uids 1..=users).
    pub users: u16,
    /// Number of attendance records; needs at least one user.
    pub logs: u32,
    /// User record format.
    pub user_layout: UserLayout,
    /// Attendance record format.
    pub log_layout: AttendanceLayout,
    /// Report 92-byte sizes (with face counters) instead of 80.
    pub face_sizes: bool,
    /// Seed of the deterministic generator.
    pub seed: u64,
    /// When set, every fifth user gets a non-ASCII name stored in this code page.
    pub native_names: Option<TextCodec>,
    /// Fingerprint templates enrolled for every user with an odd uid (fingers 0..N); users with
    /// an even uid have none, so a read always mixes both.
    pub fingers: u8,
}

/// Users, logs and formats of one emulated terminal.
pub struct Store {
    /// User record format.
    pub user_layout: UserLayout,
    /// Attendance record format.
    pub log_layout: AttendanceLayout,
    /// Users in uid order.
    pub users: Vec<UserRecord>,
    /// Attendance records, oldest first.
    pub logs: Vec<AttendanceRecord>,
    /// Fingerprint templates in uid, finger order.
    pub templates: Vec<FingerTemplate>,
    /// Report 92-byte sizes.
    pub face_sizes: bool,
    /// User capacity reported in the sizes.
    pub user_capacity: u32,
    /// Attendance capacity reported in the sizes.
    pub record_capacity: u32,
    /// Records punched "during" every attendance read: appended after the client read the
    /// counts and before the dataset is cut, as on firmware that keeps punching while a
    /// client downloads (the disable did not take, or the punch was already queued).
    pub log_growth: u32,
    /// Seed of the generator, so grown records are as reproducible as the first ones.
    seed: u64,
}

impl Store {
    /// Generates `users` users and `logs` records from `seed`; the same inputs always give the
    /// same data. Refuses a shape no device could hold: records without a user to attribute them
    /// to, or native names in 28-byte records.
    pub fn generate(shape: &Shape) -> anyhow::Result<Store> {
        if shape.logs > 0 && shape.users == 0 {
            anyhow::bail!("--logs needs at least one user (--users) to attribute the records to");
        }
        if shape.native_names.is_some() && matches!(shape.user_layout, UserLayout::Compact28) {
            anyhow::bail!("--native-names needs 72-byte users; 28-byte names hold 8 bytes")
        }
        let Shape {
            users,
            logs,
            user_layout,
            log_layout,
            face_sizes,
            seed,
            native_names,
            fingers,
        } = *shape;
        let mut rng = StdRng::seed_from_u64(seed);
        let users: Vec<UserRecord> = (1..=users)
            .map(|n| {
                let mut user = generated_user(n, user_layout, &mut rng);
                if let Some(codec) = native_names.filter(|_| n % 5 == 0) {
                    user.name = native_name(n, &codec);
                }
                user
            })
            .collect();
        let logs: Vec<AttendanceRecord> = (0..logs)
            .map(|i| generated_log(&users, i, log_layout, &mut rng))
            .collect();
        let templates = users
            .iter()
            .filter(|u| u.uid % 2 == 1)
            .flat_map(|u| {
                (0..fingers.min(10)).map(|finger| generated_template(seed, u.uid, finger))
            })
            .collect();
        // Typical TFT capacities, raised when the generated data would not fit.
        let user_capacity = 10_000.max(users.len() as u32 + 1000);
        let record_capacity = 100_000.max(logs.len() as u32 + 1000);
        Ok(Store {
            user_layout,
            log_layout,
            users,
            logs,
            templates,
            face_sizes,
            user_capacity,
            record_capacity,
            log_growth: 0,
            seed,
        })
    }

    /// Appends [`Store::log_growth`] new records (each drawn from the seed and its own index,
    /// so a test can recompute them); the emulator calls it at every attendance read.
    pub fn grow_log(&mut self) {
        for _ in 0..self.log_growth {
            let index = self.logs.len() as u32;
            if self.users.is_empty() {
                return;
            }
            let mut rng = StdRng::seed_from_u64(self.seed ^ u64::from(index).rotate_left(32));
            let record = generated_log(&self.users, index, self.log_layout, &mut rng);
            self.logs.push(record);
        }
        self.record_capacity = self.record_capacity.max(self.logs.len() as u32 + 1000);
    }

    /// Makes finger `finger` of every user who has it a duress finger (valid flag 3, pyzk's
    /// "duress"), as a terminal where users enrolled one.
    pub fn mark_duress(&mut self, finger: u8) {
        for template in self.templates.iter_mut().filter(|t| t.finger == finger) {
            template.valid = 3;
        }
    }

    /// A punch made at the terminal at `at`: the next user in turn (by log position) punches in
    /// or out with a fingerprint, appended to the log. Returns the record and its user; `None`
    /// on a terminal without users.
    pub fn punch(&mut self, at: ZkTime) -> Option<(AttendanceRecord, UserRecord)> {
        let index = self.logs.len();
        let owner = self.users.get(index % self.users.len().max(1))?.clone();
        let record = AttendanceRecord {
            uid: Some(owner.uid),
            user_id: Some(owner.user_id.clone()),
            verify: 1,
            state: (index % 2) as u8,
            time: at,
            workcode: match self.log_layout {
                AttendanceLayout::Compact8 => None,
                _ => Some(0),
            },
        };
        self.logs.push(record.clone());
        self.record_capacity = self.record_capacity.max(self.logs.len() as u32 + 1000);
        Some((record, owner))
    }

    /// The counters as firmware reports them; `skew` is added to both counts by the
    /// wrong-counts fault.
    pub fn sizes(&self, skew: u32) -> DeviceSizes {
        let count = |pred: fn(&UserRecord) -> bool| self.users.iter().filter(|u| pred(u)).count();
        DeviceSizes {
            users: self.users.len() as u32 + skew,
            fingerprints: self.templates.len() as u32,
            records: self.logs.len() as u32 + skew,
            oplog: 0,
            admins: count(|u| u.privilege & 0x0E != 0) as u32,
            passwords: count(|u| !u.password.raw.is_empty()) as u32,
            fingerprint_capacity: FINGERPRINT_CAPACITY.max(self.templates.len() as u32),
            user_capacity: self.user_capacity,
            record_capacity: self.record_capacity,
            faces: self.face_sizes.then_some(FaceSizes {
                count: 0,
                capacity: 1200,
            }),
        }
    }

    /// The user table as a dataset (length prefix + records).
    pub fn user_dataset(&self) -> Vec<u8> {
        let records: Vec<u8> = self
            .users
            .iter()
            .flat_map(|u| u.encode(self.user_layout).expect("generated users fit"))
            .collect();
        dataset_of(&records)
    }

    /// The attendance log as a dataset.
    pub fn log_dataset(&self) -> Vec<u8> {
        let records: Vec<u8> = self
            .logs
            .iter()
            .flat_map(|r| r.encode(self.log_layout).expect("generated logs fit"))
            .collect();
        dataset_of(&records)
    }

    /// Every fingerprint template as a dataset (the template bulk read).
    pub fn template_dataset(&self) -> Vec<u8> {
        let records: Vec<u8> = self
            .templates
            .iter()
            .flat_map(|t| t.encode().expect("generated templates fit"))
            .collect();
        dataset_of(&records)
    }

    /// Applies a `USER_WRQ` record with firmware semantics.
    pub fn write_user(&mut self, record: &[u8]) -> Result<(), WriteRefusal> {
        if record.len() != self.user_layout.record_len() {
            return Err(WriteRefusal::WrongLength);
        }
        let user = UserRecord::decode(record, self.user_layout, &TextCodec::default());
        let id = user.user_id.display();
        if id.is_empty() || id == "0" {
            return Err(WriteRefusal::InvalidUserId);
        }
        let by_id = self.users.iter().position(|u| u.user_id.display() == id);
        let by_uid = self.users.iter().position(|u| u.uid == user.uid);
        match (by_id, by_uid) {
            (Some(i), Some(j)) if i == j => self.users[i] = user,
            (Some(_), _) => return Err(WriteRefusal::UserIdConflict),
            (None, Some(_)) => return Err(WriteRefusal::UidTaken),
            (None, None) if self.users.len() as u32 >= self.user_capacity => {
                return Err(WriteRefusal::Full)
            }
            (None, None) => {
                self.users.push(user);
                self.users.sort_by_key(|u| u.uid);
            }
        }
        Ok(())
    }

    /// Stores one uploaded template as firmware does: only for a uid that has a user, and in
    /// place of the same finger's template if there is one. `false` (an `ACK_ERROR`) when no
    /// user has the uid or the fingerprint capacity is reached.
    pub fn write_template(&mut self, template: FingerTemplate) -> bool {
        if !self.users.iter().any(|u| u.uid == template.uid) {
            return false;
        }
        let key = (template.uid, template.finger);
        match self
            .templates
            .binary_search_by_key(&key, |t| (t.uid, t.finger))
        {
            Ok(i) => self.templates[i] = template,
            Err(_) if self.templates.len() >= FINGERPRINT_CAPACITY as usize => return false,
            Err(i) => self.templates.insert(i, template),
        }
        true
    }

    /// Executes a destructive command the way a terminal would. The emulator must behave like
    /// the device even when a client misbehaves, so the effect is real; the command log flags it.
    pub fn delete_user(&mut self, uid: u16) -> bool {
        let before = self.users.len();
        self.users.retain(|u| u.uid != uid);
        before != self.users.len()
    }
}

/// The template of one finger: 400–700 opaque bytes drawn from the seed, uid and finger, so a
/// test can recompute it.
fn generated_template(seed: u64, uid: u16, finger: u8) -> FingerTemplate {
    let mut rng = StdRng::seed_from_u64(seed ^ (u64::from(uid) << 8 | u64::from(finger)) << 20);
    let len = rng.random_range(400..700);
    FingerTemplate {
        uid,
        finger,
        valid: 1,
        template: (0..len).map(|_| rng.random()).collect(),
    }
}

/// Attendance record number `i`, punched by the users in turn.
fn generated_log(
    users: &[UserRecord],
    i: u32,
    layout: AttendanceLayout,
    rng: &mut StdRng,
) -> AttendanceRecord {
    let owner = &users[(i as usize) % users.len().max(1)];
    AttendanceRecord {
        uid: Some(owner.uid),
        user_id: Some(owner.user_id.clone()),
        verify: [1, 15, 2, 0][rng.random_range(0..4)],
        state: rng.random_range(0..2),
        // ~26 minutes apart: 100,000 records span about five real calendar years. Stepping in
        // real seconds (not in ZK time units, whose months all have 31 days) keeps every
        // timestamp a valid date, as on a device.
        time: to_zk(CalendarTime::from_unix(
            FIRST_PUNCH.to_unix() + i64::from(i) * 1_567 + rng.random_range(0..60),
        )),
        workcode: match layout {
            AttendanceLayout::Compact8 => None,
            _ => Some(0),
        },
    }
}

/// A non-ASCII name in the device code page: the first of a few scripts the page can hold.
fn native_name(uid: u16, codec: &TextCodec) -> DeviceText {
    ["张伟", "Иван", "Zoë", "Ωμέγα"]
        .iter()
        .find_map(|name| codec.encode(&format!("{name} {uid}")).ok())
        .expect("every code page holds at least Latin-1 or Cyrillic or Han text")
}

fn generated_user(uid: u16, layout: UserLayout, rng: &mut StdRng) -> UserRecord {
    const NAMES: [&str; 8] = [
        "Ana", "Bruno", "Chen", "Dara", "Emil", "Farah", "Goran", "Hiro",
    ];
    let (name, password, user_id, time_zones, card) = match layout {
        UserLayout::Extended72 => (
            format!("{} {uid}", NAMES[rng.random_range(0..NAMES.len())]),
            if uid % 3 == 0 { "1234" } else { "" },
            UserId::Text(DeviceText::utf8(&(1000 + u32::from(uid)).to_string())),
            TimeZones::Extended {
                own: 0,
                zones: [0; 3],
            },
            if uid % 2 == 0 {
                u64::from(rng.random_range(1_000_000u32..9_999_999))
            } else {
                0
            },
        ),
        UserLayout::Compact28 => (
            format!("U{uid}"),
            if uid % 3 == 0 { "123" } else { "" },
            UserId::Number(1000 + u32::from(uid)),
            TimeZones::Compact { bits: 0 },
            if uid % 2 == 0 {
                u64::from(rng.random_range(1_000_000u32..9_999_999))
            } else {
                0
            },
        ),
    };
    UserRecord {
        uid,
        privilege: if uid == 1 { 14 } else { 0 },
        password: DeviceText::utf8(password),
        name: DeviceText::utf8(&name),
        card,
        group: 1,
        user_id,
        time_zones,
    }
}
