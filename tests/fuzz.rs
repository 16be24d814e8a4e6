//! Time-budgeted mutation fuzzing on the stable toolchain (cargo-fuzz needs nightly): one
//! test per target, each running for `FUZZ_SECS` seconds (default 15) from the seed
//! `FUZZ_SEED` (default: taken from the clock, always printed).
//!
//! Targets: `mime_adapter` (`core::mime::parse`), `docx_reader` and `spreadsheet_readers`
//! (`core::grid::read` on .docx, .xlsx, .ods, .xls), `form_parsers` (the parsers of
//! `core::forms` on generated documents and mutated photos) and `whole_pipeline`
//! (`core::process` on mutated submission mails).
//!
//! Mutations are structure-aware where byte flips would only hit CRC and inflate errors:
//! packages are unzipped, their XML parts mutated element by element and re-zipped (stored or
//! deflated); `.xls` files have their BIFF records mutated inside the compound file; mails are
//! rebuilt from mutated parts (attachments re-encoded) and then get header and MIME-structure
//! mutations. Plain byte mutations (flip, insert, delete, splice, truncate) run on top.
//!
//! Oracle: no panic may escape, and no panic may happen in this crate's own code even when a
//! guard inside the library catches it (the panic hook sees where it happened). Panics inside
//! dependencies that the library catches by design (calamine, mail-parser) are counted and
//! printed, not failed. Besides, the invariants the code promises: limits kept, the same
//! input giving the same result, findings that say where they are. A failing input is
//! written to `target/fuzz-failures/<target>-<seed>-<iteration>.bin` (generated documents as
//! JSON). Input `i` depends only on the seed and `i`: `FUZZ_SEED=<seed> FUZZ_ITERATION=<i>`
//! runs that one input again, and `FUZZ_SEED=<seed>` alone replays a whole run, also one that
//! aborted the process (a stack overflow cannot be caught).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};
use std::panic::{AssertUnwindSafe, PanicHookInfo};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use studio_intake::config::{Config, Unit, UnitKind};
use studio_intake::core::findings::Finding;
use studio_intake::convert::Converters;
use studio_intake::core::grid::{self, Block, Document, Format, Table};
use studio_intake::core::{self, Context, Limits, forms, mime, text};
use studio_intake::fixtures::{
    self, DocTool, MailClient, MailSpec, SheetTool, StudioSpec, SubmissionOptions, UnitSpec, ZipMode,
};

// ======================================================================= PRNG

/// splitmix64: tiny, fast and good enough to drive mutations.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    /// The generator of iteration `i` of a run: every input depends only on (seed, i).
    fn for_iteration(seed: u64, i: u64) -> Rng {
        let mut r = Rng(seed ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next();
        r
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (0 when `n == 0`).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
    /// A size skewed towards small values: mostly 1..8, sometimes up to `max`.
    fn small(&mut self, max: usize) -> usize {
        if self.chance(8) { 1 + self.below(max.max(1)) } else { 1 + self.below(8.min(max.max(1))) }
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

// ======================================================================= harness

/// One input taking longer than this is a hang. Tests run unoptimised: a fuzzed 31 MB mail
/// with nested multiparts took over 10 s here and 0.26 s in the release build (`check`),
/// so the bound leaves room for that factor and still stops a real endless loop.
const HANG: Duration = Duration::from_secs(60);

fn budget() -> Duration {
    let secs = std::env::var("FUZZ_SECS").ok().and_then(|s| s.trim().parse::<f64>().ok()).unwrap_or(15.0);
    Duration::from_secs_f64(secs.max(0.0))
}

/// `FUZZ_SEED`, else one clock-derived seed for the whole test binary.
fn run_seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        std::env::var("FUZZ_SEED").ok().and_then(|s| s.trim().parse().ok()).unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            now.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)
        })
    })
}

/// What a target feeds its code: its size (for the slowest-input report) and bytes to save.
trait Input {
    fn size(&self) -> usize;
    fn to_bytes(&self) -> Vec<u8>;
    /// What the bytes alone do not say (a file name).
    fn note(&self) -> String {
        String::new()
    }
}

impl Input for Vec<u8> {
    fn size(&self) -> usize {
        self.len()
    }
    fn to_bytes(&self) -> Vec<u8> {
        self.clone()
    }
}

/// A file with its name (the readers use the name to break ties).
struct File {
    name: String,
    data: Vec<u8>,
}

impl Input for File {
    fn size(&self) -> usize {
        self.data.len()
    }
    fn to_bytes(&self) -> Vec<u8> {
        self.data.clone()
    }
    fn note(&self) -> String {
        format!("file name {:?}", self.name)
    }
}

/// Where a panic happened, as the hook saw it.
struct PanicSeen {
    location: String,
    message: String,
    /// In this crate's own source (`src/…`), not in a dependency or the standard library.
    ours: bool,
}

type Hook = Box<dyn Fn(&PanicHookInfo<'_>) + Sync + Send + 'static>;

thread_local! {
    static FUZZING: Cell<bool> = const { Cell::new(false) };
    static PANICS: RefCell<Vec<PanicSeen>> = const { RefCell::new(Vec::new()) };
}

/// The hook that was there before the first fuzz target started, and how many run now
/// (targets run in parallel threads; the hook is process-wide).
static HOOK_STATE: Mutex<(usize, Option<Arc<Hook>>)> = Mutex::new((0, None));

/// While alive, panics inside [`QuietPanics::run`] are recorded instead of printed; panics
/// elsewhere (and on other threads) go to the previous hook. The last guard dropped restores
/// that hook.
struct QuietPanics;

impl QuietPanics {
    fn install() -> QuietPanics {
        let mut state = HOOK_STATE.lock().unwrap_or_else(PoisonError::into_inner);
        if state.0 == 0 {
            let previous: Arc<Hook> = Arc::new(std::panic::take_hook());
            let fallback = Arc::clone(&previous);
            std::panic::set_hook(Box::new(move |info| {
                if FUZZING.with(Cell::get) {
                    record_panic(info);
                } else {
                    fallback(info);
                }
            }));
            state.1 = Some(previous);
        }
        state.0 += 1;
        QuietPanics
    }

    /// Runs `f` with its panics recorded (see [`take_panics`]) and caught.
    fn run<T>(&self, f: impl FnOnce() -> T) -> std::thread::Result<T> {
        PANICS.with(|p| p.borrow_mut().clear());
        FUZZING.with(|f| f.set(true));
        let result = std::panic::catch_unwind(AssertUnwindSafe(f));
        FUZZING.with(|f| f.set(false));
        result
    }
}

fn take_panics() -> Vec<PanicSeen> {
    PANICS.with(|p| std::mem::take(&mut *p.borrow_mut()))
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        let mut state = HOOK_STATE.lock().unwrap_or_else(PoisonError::into_inner);
        state.0 -= 1;
        // The hook cannot be changed while this thread unwinds (a bug in a generator); ours
        // stays, and forwards to the previous one.
        if state.0 == 0 && !std::thread::panicking() {
            drop(std::panic::take_hook());
            if let Some(previous) = state.1.take() {
                std::panic::set_hook(Box::new(move |info| previous(info)));
            }
        }
    }
}

fn record_panic(info: &PanicHookInfo<'_>) {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    let (location, ours) = match info.location() {
        // Files of the crate under test have paths relative to its root; dependencies and the
        // standard library have absolute ones.
        Some(l) => (format!("{}:{}", l.file(), l.line()), l.file().starts_with("src/")),
        None => ("(unknown)".into(), false),
    };
    PANICS.with(|p| p.borrow_mut().push(PanicSeen { location, message, ours }));
}

fn failures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target").join("fuzz-failures")
}

fn save_failure(target: &str, seed: u64, iteration: u64, bytes: &[u8]) -> String {
    let dir = failures_dir();
    let path = dir.join(format!("{target}-{seed}-{iteration}.bin"));
    match std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, bytes)) {
        Ok(()) => path.display().to_string(),
        Err(e) => format!("(could not write {}: {e})", path.display()),
    }
}

/// Sets its flag when dropped, also while unwinding, so the watchdog always ends.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `check` on generated inputs until the time budget is spent. `check` returns `Err`
/// for a broken invariant. Fails the test on the first panic, broken invariant or hang.
fn fuzz<I: Input>(
    target: &str,
    generate: impl Fn(&mut Rng) -> I + Sync,
    check: impl Fn(&I, &mut Rng) -> Result<(), String>,
) {
    let seed = run_seed();
    let budget = budget();
    // `FUZZ_ITERATION`: run that one input of the seed's sequence again (replay a failure).
    let only: Option<u64> = std::env::var("FUZZ_ITERATION").ok().and_then(|s| s.trim().parse().ok());
    println!("fuzz {target}: seed {seed} (replay with FUZZ_SEED={seed}), budget {budget:?}");
    let started = Instant::now();
    // Nanoseconds since `started` + 1 at which the running input began; 0 = idle.
    let busy_since = AtomicU64::new(0);
    let busy_iteration = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let failure = std::thread::scope(|scope| {
        // A hung input never returns: the watchdog saves it and ends the process.
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let since = busy_since.load(Ordering::Relaxed);
                if since == 0 {
                    continue;
                }
                let running = started.elapsed().saturating_sub(Duration::from_nanos(since - 1));
                if running > HANG && busy_since.load(Ordering::Relaxed) == since {
                    let i = busy_iteration.load(Ordering::Relaxed);
                    let input = generate(&mut Rng::for_iteration(seed, i));
                    let path = save_failure(target, seed, i, &input.to_bytes());
                    eprintln!(
                        "fuzz {target}: HANG: iteration {i} has run for {running:?} (> {HANG:?}); {} input saved to {path}; replay with FUZZ_SEED={seed} FUZZ_ITERATION={i}",
                        input.note()
                    );
                    std::process::exit(101);
                }
            }
        });
        let _stop_watchdog = StopOnDrop(&done);
        let quiet = QuietPanics::install();
        let mut iterations: u64 = 0;
        let mut slowest: (Duration, usize, u64) = (Duration::ZERO, 0, 0);
        let mut guarded: BTreeMap<String, (u64, String)> = BTreeMap::new();
        let failure = loop {
            let done_all = match only {
                Some(_) => iterations == 1,
                None => started.elapsed() >= budget,
            };
            if done_all {
                break None;
            }
            let i = only.unwrap_or(iterations);
            let mut rng = Rng::for_iteration(seed, i);
            let input = generate(&mut rng);
            if only.is_some() {
                // A replay writes its input out, to look at (a slow one, say) outside the run.
                println!("fuzz {target}: {} input written to {}", input.note(), save_failure(target, seed, i, &input.to_bytes()));
            }
            busy_iteration.store(i, Ordering::Relaxed);
            busy_since.store(started.elapsed().as_nanos() as u64 + 1, Ordering::Relaxed);
            let t0 = Instant::now();
            let outcome = quiet.run(|| check(&input, &mut rng));
            let took = t0.elapsed();
            busy_since.store(0, Ordering::Relaxed);
            let panics = take_panics();
            let show = |p: &PanicSeen| format!("{} at {}", p.message, p.location);
            let problem = match outcome {
                Err(_) => Some(format!(
                    "panic escaped: {}",
                    panics.last().map(show).unwrap_or_else(|| "(not seen by the hook)".into())
                )),
                Ok(_) if panics.iter().any(|p| p.ours) => Some(format!(
                    "panic in this crate (caught by a guard of the library): {}",
                    panics.iter().filter(|p| p.ours).map(show).collect::<Vec<_>>().join("; ")
                )),
                Ok(Err(broken)) => Some(format!("invariant broken: {broken}")),
                Ok(Ok(())) if took > HANG => Some(format!("hang: one input took {took:?}")),
                Ok(Ok(())) => None,
            };
            if let Some(problem) = problem {
                let path = save_failure(target, seed, i, &input.to_bytes());
                break Some(format!(
                    "fuzz {target}: {problem}\n  {} input ({} bytes) saved to {path}\n  replay with FUZZ_SEED={seed} FUZZ_ITERATION={i} cargo test --test fuzz {target}",
                    input.note(),
                    input.size()
                ));
            }
            for p in panics {
                let entry = guarded.entry(p.location).or_insert((0, p.message));
                entry.0 += 1;
            }
            if took > slowest.0 {
                slowest = (took, input.size(), i);
            }
            iterations += 1;
        };
        let secs = started.elapsed().as_secs_f64();
        println!(
            "fuzz {target}: {iterations} iterations in {secs:.1}s = {:.0}/s; slowest input {:?} ({} bytes, iteration {})",
            iterations as f64 / secs.max(1e-9),
            slowest.0,
            slowest.1,
            slowest.2
        );
        for (location, (count, message)) in &guarded {
            println!("fuzz {target}: {count}× dependency panic caught by the library's guard at {location}: {message}");
        }
        failure
    });
    if let Some(failure) = failure {
        panic!("{failure}");
    }
}

// ======================================================================= vocabulary

/// Labels of 附件1 (src/core/forms.rs, APPROVAL_FIELDS and SECTION_LABELS) as printed and
/// as people retype them.
const APPROVAL_LABELS: &[&str] = &[
    "创新工作室名称", "工作室名称", "创建时间", "成立时间", "创建日期", "创新工作室所属单位名称",
    "所属单位名称", "所属单位", "姓名", "负责人姓名", "带头人姓名", "工作单位及职务",
    "工作单位及\n职务", "工作单位及职务职称", "工作单位", "性别", "出生年月", "出生日期",
    "出生年月日", "籍贯", "民族", "政治面貌", "学历", "文化程度", "职称", "技术等级", "技能等级",
    "是否荣获过劳模和工匠称号", "是否荣获过劳模或工匠称号", "何时获何种劳模称号", "何时获何种称号",
    "创新工作室简介及主要先进事迹", "创新工作室简介及主要先进事迹（600字以内）", "工作室简介",
    "所在单位工会意见", "县（市、区）总工会意见", "县(市、区)总工会意见", "乐山市总工会意见",
    "创新工作室负责人（带头人）基本情况", "创新工\n作室基\n本情况", "创新工作室获奖情况",
    "姓名：", "性别：女", "创建时间：2016.5", "姓 名",
];

/// The fill-in blanks of 附件1: (label, unit).
const BLANKS: &[(&str, &str)] = &[
    ("共", "人"), ("其中男", "人"), ("男", "人"), ("女", "人"), ("中共党员", "人"), ("党员", "人"),
    ("平均年龄", "岁"), ("博士", "人"), ("硕士", "人"), ("本科", "人"), ("大专", "人"),
    ("高中（含）以下", "人"), ("高中及以下", "人"), ("高级技师", "人"), ("技师", "人"),
    ("高级工", "人"), ("中级工", "人"), ("初级工", "人"), ("助理工程师", "人"), ("工程师", "人"),
    ("高级工程师", "人"), ("研究员", "人"), ("工作场地（所）面积", "㎡"), ("场地面积", "平方米"),
    ("仪器设备", "台（套）"), ("专业技术书籍资料", "册"), ("年均专项经费", "万元"),
    ("年均技能培训", "人次"), ("创新成果", "项"), ("成果转化", "项"), ("实用新型专利", "项"),
    ("发明专利", "项"), ("创新成果节创经济效益累计", "万元"), ("国际级", "项"), ("国家级", "项"),
    ("省部级", "项"), ("地市级", "项"), ("共计", "项"),
];

/// Lines of 附件2 and titles around the tables.
const OTHER_TEXT: &[&str] = &[
    "乐山市劳模和工匠人才创新工作室推荐汇总表", "乐山市劳模和工匠人才创新工作室推荐审批表",
    "推荐单位（盖章）：犍为县总工会        填报人：李华", "推荐单位（盖章）：", "推荐单位", "填报人：",
    "填报人", "联系电话：13800000000", "填报日期：2020年9月20日", "填表要求：1.以上项目须逐项如实填写，不得漏项。",
    "注：", "注：本表一式两份", "序号", "排序", "创新工作室负责人（带头人）基本情况",
    "创新工作室工作开展基本情况", "申报材料", "一、基本情况", "二、近两年工作情况", "三、近两年主要成效",
    "（一）日常运作", "附件1", "附件2", "附件3", "是", "否", "无", "没有", "是，2018年获四川省劳动模范",
    "甲公司张三劳模和工匠人才创新工作室", "四川省犍为县供电公司", "张明", "班长 高级技师",
];

const NUMBERS: &[&str] = &[
    "0", "1", "8", "12", "38", "2016", "-3", "3.5", "1,200", "1,2,3", "８", "12.5万元", "约300", "八", "十二",
    "二十五", "一百二十", "两", "零", "若干", "不详", "待定", "暂无", "-", "/", "___", "…", "99999999999999999999",
    "1e309", "0.000001", "NaN", "+7", ".5", "5.", "1..2", "１２０㎡", "8人", "120平方米", "30台(套)",
];

const DATES: &[&str] = &[
    "2016.5", "2016年5月", "2016-05-01", "2016/5/1", "2016年5月1日", "2016.05.01", "2016-5", "201605", "16.5",
    "2099-13-45", "0000-00-00", "2016年13月", "2016.0", "99999999", "2016-05-01 10:00:00", "1900-02-29",
    "2020年", "五月", "2016.5.", "２０１６年５月",
];

/// Characters and strings that break naive text handling.
const ODD: &[&str] = &[
    "", " ", "\u{3000}", "\u{a0}", "\u{200b}", "\u{202e}", "\u{2066}", "\u{feff}", "\n", "\r\n", "\t", "（",
    "）", "(", ")", "：", ":", "，", "。", "；", "、", ",", "\u{fffd}", "😀", "e\u{301}", "\0", "\u{7f}",
    "＿＿＿", "____", "—", "…", "&amp;", "<", "\u{10ffff}", "ß", "İ", "ǅ", "\u{ff1a}",
];

const HANZI: &str = "的一是了我不人在他有这个上们来到时大地为子中你说生国年着就那和要她出也得里后自以会家可下而过天去能对小多然于心学么之都好看起发当没成只如事把还用第样道想作种开美总从无情己面最女但现前些所同日手又行意动方期它头经长儿回位分爱老因很给名法间斯知世什两次使身者被高已亲其进此话常与活正感见明问力理尔点文几定本公特做外孩相西果走将月十实向声车全信重三机工物气每并别真打太新比才便";

fn hanzi(rng: &mut Rng, n: usize) -> String {
    let chars: Vec<char> = HANZI.chars().collect();
    (0..n).map(|_| *rng.pick(&chars)).collect()
}

/// A label from the forms' vocabulary, sometimes retyped (spaces, line breaks, full width).
fn label(rng: &mut Rng) -> String {
    let base = match rng.below(4) {
        0 => rng.pick(forms::SUMMARY_COLUMNS).label.to_string(),
        1 => rng.pick(OTHER_TEXT).to_string(),
        _ => rng.pick(APPROVAL_LABELS).to_string(),
    };
    if rng.chance(4) { retype(rng, &base) } else { base }
}

/// The same text as a hurried applicant types it: a space, line break or odd character
/// somewhere, a colon after it.
fn retype(rng: &mut Rng, s: &str) -> String {
    let mut chars: Vec<String> = s.chars().map(String::from).collect();
    for _ in 0..rng.small(4) {
        let at = rng.below(chars.len() + 1);
        chars.insert(at, rng.pick(ODD).to_string());
    }
    if rng.chance(3) {
        chars.push(rng.pick(&["：", ":", "（说明）", "(注)"]).to_string());
    }
    chars.concat()
}

/// A fill-in sentence of 附件1: `共 8 人。其中男 6 人，女 2 人…`.
fn sentence(rng: &mut Rng) -> String {
    let mut s = String::new();
    for _ in 0..rng.small(12) {
        let (label, unit) = *rng.pick(BLANKS);
        let value = match rng.below(4) {
            0 => String::new(),
            1 => rng.pick(NUMBERS).to_string(),
            _ => rng.below(200).to_string(),
        };
        let space = rng.pick(&["", " ", "  ", "\u{3000}", "____"]);
        let unit = if rng.chance(6) { "" } else { unit };
        s.push_str(&format!("{label}{space}{value}{space}{unit}"));
        let separator = *rng.pick(&["，", "。", "；", "、", ",", ";", "：", "", " "]);
        s.push_str(separator);
    }
    s
}

/// Any cell text: labels, values, sentences, prose, odd characters.
fn cell_text(rng: &mut Rng) -> String {
    match rng.below(10) {
        0 | 1 => label(rng),
        2 => rng.pick(NUMBERS).to_string(),
        3 => rng.pick(DATES).to_string(),
        4 => sentence(rng),
        5 => {
            let n = rng.small(60);
            hanzi(rng, n)
        }
        6 => rng.pick(ODD).to_string(),
        7 => format!("{}{}", label(rng), cell_value(rng)),
        8 => String::new(),
        _ => cell_value(rng),
    }
}

fn cell_value(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => rng.pick(NUMBERS).to_string(),
        1 => rng.pick(DATES).to_string(),
        2 => format!("{}{}", hanzi(rng, 3), rng.pick(&["劳模和工匠人才创新工作室", "公司", "工会", ""])),
        _ => {
            let n = rng.small(30);
            hanzi(rng, n)
        }
    }
}

/// Numbers for attributes that size things (`gridSpan`, repeats, row numbers).
const SIZES: &[&str] = &[
    "0", "1", "2", "3", "7", "16", "999", "1000", "1001", "16384", "65535", "65536", "1048576", "1048577",
    "2147483647", "4294967295", "4294967296", "18446744073709551615", "18446744073709551616", "-1", " 5 ", "+3",
    "1e3", "", "0x10", "٣",
];

/// Cell references for `r=`, `ref=` and merge ranges.
const REFS: &[&str] = &[
    "A1", "B3", "XFD1048576", "A1048576", "A1048577", "XFE1", "AAAAAAAA1", "ZZZZZZZ1", "A0", "$B$3", "Z99999999",
    "a1", "1A", "", "A-1", "A18446744073709551617", "A1:XFD1048576", "B2:A1", "A1:A1", "A", "AB12:CD", ":",
];

fn random_ref(rng: &mut Rng) -> String {
    if rng.chance(2) {
        return rng.pick(REFS).to_string();
    }
    let (cols, rows) = if rng.chance(4) { (20_000, 2_000_000) } else { (30, 60) };
    let col = grid::column_letters(rng.below(cols));
    let row = 1 + rng.below(rows);
    format!("{col}{row}")
}

// ======================================================================= byte mutations

const TOKENS: &[&[u8]] = &[
    b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"\xff\xd8\xff", b"\xff\xd9", b"IEND", b"=?gbk?B?", b"?=",
    b"\r\n\r\n", b"\r\n--", b"--", b"&#0;", b"&#x110000;", b"&amp;", b"\xef\xbb\xbf", b"\xc3", b"\xff\xfe",
    b"\xb8\xbd\xbc\xfe", b"<", b">", b"\"", b"=", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x7f\xff",
];

/// AFL-style havoc: a few random byte-level edits; `others` are splice partners.
fn havoc(rng: &mut Rng, data: &mut Vec<u8>, others: &[&[u8]]) {
    for _ in 0..rng.small(16) {
        let len = data.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.next() as u8;
            }
            2 => {
                let at = rng.below(len + 1);
                let n = rng.small(64);
                let bytes = rng.bytes(n);
                data.splice(at..at, bytes);
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let n = rng.small(256).min(len - at);
                data.drain(at..at + n);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let n = rng.small(512).min(len - at);
                let copy = data[at..at + n].to_vec();
                let to = rng.below(len + 1);
                data.splice(to..to, copy);
            }
            5 if !others.is_empty() => {
                let other = *rng.pick(others);
                let from = rng.below(other.len() + 1);
                let at = rng.below(len + 1);
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
            6 if len > 0 => data.truncate(rng.below(len)),
            7 => {
                let token = *rng.pick(TOKENS);
                let at = rng.below(len + 1);
                if rng.chance(2) {
                    data.splice(at..at, token.iter().copied());
                } else {
                    let end = (at + token.len()).min(len);
                    data.splice(at..end, token.iter().copied());
                }
            }
            _ => {
                // Overwrite a little-endian integer with an extreme value (sizes, offsets).
                if len >= 4 {
                    let at = rng.below(len - 3);
                    let v: u32 = *rng.pick(&[0, 1, 0x7fff_ffff, 0xffff_ffff, 0x8000_0000, 0xffff, 0x1_0000]);
                    data[at..at + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
}

// ======================================================================= XML mutations

/// What an XML part is made of, for element-aware mutations.
struct XmlVocab {
    /// Element names (with prefix).
    tags: &'static [&'static str],
    /// Attribute names whose values size or place things.
    attrs: &'static [&'static str],
    /// Snippets with `{N}` (a size), `{R}` (a cell reference) and `{T}` (text) holes.
    snippets: &'static [&'static str],
    /// (open, close) pairs used to nest an element deeply.
    wrappers: &'static [(&'static str, &'static str)],
}

const DOCX_VOCAB: XmlVocab = XmlVocab {
    tags: &[
        "w:p", "w:r", "w:t", "w:tbl", "w:tr", "w:tc", "w:tcPr", "w:gridSpan", "w:vMerge", "w:trPr", "w:gridBefore",
        "w:gridAfter", "w:sdt", "w:sdtContent", "w:txbxContent", "mc:AlternateContent", "mc:Choice", "mc:Fallback",
        "w:br", "w:tab", "w:ins", "w:del", "w:customXml", "w:smartTag", "w:body", "w:document", "w:rPr", "w:pPr",
        "w:altChunk", "w:fldChar", "w:ffData", "w:sym", "w:vanish", "w:moveFrom", "w:moveTo", "w:fldSimple", "w:hdr",
        "w:sdtPr", "Relationship", "Override",
    ],
    attrs: &["w:val", "val", "w:w", "w:type", "xml:space", "xmlns:w", "r:id", "w:fldCharType", "w:char", "w:font", "Target", "Type", "PartName"],
    snippets: &[
        r#"<w:tc><w:tcPr><w:gridSpan w:val="{N}"/></w:tcPr><w:p><w:r><w:t>{T}</w:t></w:r></w:p></w:tc>"#,
        r#"<w:tc><w:tcPr><w:vMerge/></w:tcPr><w:p/></w:tc>"#,
        r#"<w:tc><w:tcPr><w:vMerge w:val="restart"/></w:tcPr><w:p><w:r><w:t>{T}</w:t></w:r></w:p></w:tc>"#,
        r#"<w:tr><w:trPr><w:gridBefore w:val="{N}"/><w:gridAfter w:val="{N}"/></w:trPr><w:tc><w:p/></w:tc></w:tr>"#,
        r#"<w:tr><w:tc><w:p><w:r><w:t>{T}</w:t></w:r></w:p></w:tc></w:tr>"#,
        r#"<w:tbl><w:tr><w:tc><w:p><w:r><w:t>{T}</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>{T}</w:t></w:r></w:p></w:tc></w:tr></w:tbl>"#,
        r#"<w:p><w:r><w:t xml:space="preserve">{T}</w:t></w:r></w:p>"#,
        r#"<w:r><w:t>{T}</w:t><w:br/><w:tab/><w:t>{T}</w:t></w:r>"#,
        r#"<mc:AlternateContent><mc:Choice Requires="wps"><w:p><w:r><w:t>{T}</w:t></w:r></w:p></mc:Choice><mc:Fallback><w:p><w:r><w:t>{T}</w:t></w:r></w:p></mc:Fallback></mc:AlternateContent>"#,
        r#"<w:r><w:drawing><w:txbxContent><w:p><w:r><w:t>{T}</w:t></w:r></w:p></w:txbxContent></w:drawing></w:r>"#,
        r#"<w:sdt><w:sdtPr/><w:sdtContent><w:tr><w:tc><w:p><w:r><w:t>{T}</w:t></w:r></w:p></w:tc></w:tr></w:sdtContent></w:sdt>"#,
        r#"<w:del><w:r><w:delText>{T}</w:delText></w:r></w:del><w:ins><w:r><w:t>{T}</w:t></w:r></w:ins>"#,
        r#"<w:t>{T}</w:t>"#,
        r#"<![CDATA[{T}]]>"#,
        r#"<!-- {T} --><?pi {T}?>"#,
        r#"<x:unknown xmlns:x="urn:x"><w:p><w:r><w:t>{T}</w:t></w:r></w:p></x:unknown>"#,
        r#"<w:altChunk r:id="rId{N}"/>"#,
        r#"<w:altChunk r:id="rIdChunk1"/>"#,
        r#"<w:r><w:fldChar w:fldCharType="begin"><w:ffData><w:checkBox><w:default w:val="{N}"/><w:checked/></w:checkBox></w:ffData></w:fldChar></w:r><w:r><w:instrText>{T}</w:instrText></w:r><w:r><w:fldChar w:fldCharType="separate"/></w:r><w:r><w:t>{T}</w:t></w:r><w:r><w:fldChar w:fldCharType="end"/></w:r>"#,
        r#"<w:r><w:fldChar w:fldCharType="begin"><w:ffData><w:ddList><w:result w:val="{N}"/><w:listEntry w:val="{T}"/></w:ddList></w:ffData></w:fldChar></w:r>"#,
        r#"<w:fldSimple w:instr=" {T} "><w:r><w:t>{T}</w:t></w:r></w:fldSimple>"#,
        r#"<w:r><w:sym w:font="Wingdings" w:char="F0{N}"/></w:r>"#,
        r#"<w:r><w:rPr><w:vanish/></w:rPr><w:t>{T}</w:t></w:r>"#,
        r#"<w:tr><w:trPr><w:del w:id="{N}"/></w:trPr><w:tc><w:p><w:r><w:t>{T}</w:t></w:r></w:p></w:tc></w:tr>"#,
        r#"<w:sdt><w:sdtPr><w:showingPlcHdr/></w:sdtPr><w:sdtContent><w:r><w:t>{T}</w:t></w:r></w:sdtContent></w:sdt>"#,
        r#"<w:moveFrom><w:r><w:t>{T}</w:t></w:r></w:moveFrom><w:moveTo><w:r><w:t>{T}</w:t></w:r></w:moveTo>"#,
        r#"<Relationship Id="rId{N}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/aFChunk" Target="{T}"/>"#,
        r#"<Relationship Id="rId{N}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="{T}"/>"#,
        r#"<Relationship Id="rId{N}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/header" Target="../{T}"/>"#,
        r#"<Override PartName="/{T}" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>"#,
        r#"<table><tr><td colspan="{N}" rowspan="{N}">{T}</td><td>&#{N};&nbsp;</td></tr></table>"#,
    ],
    wrappers: &[
        ("<w:tbl><w:tr><w:tc>", "</w:tc></w:tr></w:tbl>"),
        ("<w:sdt><w:sdtContent>", "</w:sdtContent></w:sdt>"),
        ("<w:customXml>", "</w:customXml>"),
        ("<w:p><w:r><w:txbxContent>", "</w:txbxContent></w:r></w:p>"),
        ("<mc:AlternateContent><mc:Choice>", "</mc:Choice></mc:AlternateContent>"),
        ("<w:r>", "</w:r>"),
        ("<w:ins>", "</w:ins>"),
    ],
};

const XLSX_VOCAB: XmlVocab = XmlVocab {
    tags: &[
        "row", "c", "v", "is", "t", "f", "si", "r", "dimension", "mergeCell", "mergeCells", "sheetData", "sheet",
        "sheets", "col", "cols", "worksheet", "sst", "workbook", "Override", "Default", "Relationship",
    ],
    attrs: &[
        "r", "ref", "t", "s", "count", "uniqueCount", "sheetId", "r:id", "spans", "name", "Target", "ContentType", "PartName",
        "hidden", "state", "min", "max", "si",
    ],
    snippets: &[
        r#"<dimension ref="{R}"/>"#,
        r#"<mergeCells count="{N}"><mergeCell ref="{R}:{R}"/></mergeCells>"#,
        r#"<mergeCell ref="{R}"/>"#,
        r#"<c r="{R}" t="s"><v>{N}</v></c>"#,
        r#"<c r="{R}" t="inlineStr"><is><t>{T}</t></is></c>"#,
        r#"<c r="{R}"><v>{N}</v></c>"#,
        r#"<c r="{R}" t="str"><f>A1*2</f><v>{T}</v></c>"#,
        r#"<c r="{R}" t="d"><v>2016-05-01T00:00:00</v></c>"#,
        r#"<c r="{R}" t="e"><v>#DIV/0!</v></c>"#,
        r#"<c r="{R}" t="b"><v>{N}</v></c>"#,
        r#"<c r="{R}" s="{N}"><v>42500.5</v></c>"#,
        r#"<row r="{N}"><c r="{R}"><v>1</v></c></row>"#,
        r#"<row r="{N}" spans="1:{N}"/>"#,
        r#"<si><t>{T}</t></si>"#,
        r#"<si><r><t>{T}</t></r><r><t>{T}</t></r></si>"#,
        r#"<sheet name="{T}" sheetId="{N}" r:id="rId{N}"/>"#,
        r#"<Override PartName="/xl/worksheets/sheet{N}.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>"#,
        r#"<Relationship Id="rId{N}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="{T}"/>"#,
        r#"<numFmt numFmtId="{N}" formatCode="yyyy-mm-dd"/>"#,
        r#"<!DOCTYPE x [<!ENTITY a "{T}{T}{T}">]>"#,
        r#"<row r="{N}" hidden="1"><c r="{R}" t="inlineStr"><is><t>{T}</t></is></c></row>"#,
        r#"<cols><col min="{N}" max="{N}" width="0" hidden="1"/></cols>"#,
        r#"<sheet name="{T}" sheetId="{N}" state="hidden" r:id="rId{N}"/>"#,
        r#"<c r="{R}"><f t="shared" ref="{R}:{R}" si="{N}">SUM(A1:A2)</f><v>{N}</v></c>"#,
        r#"<c r="{R}"><f t="shared" si="{N}"/><v>{N}</v></c>"#,
        r#"<c r="{R}"><f t="array" ref="{R}">SUM(1,2)</f><v>3</v></c>"#,
        r#"<c t="inlineStr"><is><t>{T}_x000D_</t></is></c>"#,
        r#"<si><r><t>{T}</t></r><rPh sb="0" eb="1"><t>{T}</t></rPh></si>"#,
    ],
    wrappers: &[("<row>", "</row>"), ("<c>", "</c>"), ("<is>", "</is>"), ("<sheetData>", "</sheetData>")],
};

const ODS_VOCAB: XmlVocab = XmlVocab {
    tags: &[
        "table:table", "table:table-row", "table:table-cell", "table:covered-table-cell", "text:p", "text:span",
        "table:table-column", "office:spreadsheet", "office:body", "table:table-header-rows",
    ],
    attrs: &[
        "table:number-rows-repeated", "table:number-columns-repeated", "table:number-columns-spanned",
        "table:number-rows-spanned", "office:value-type", "office:value", "office:date-value", "office:time-value",
        "table:name", "calcext:value-type",
    ],
    snippets: &[
        r#"<table:table-row table:number-rows-repeated="{N}"><table:table-cell table:number-columns-repeated="{N}" office:value-type="float" office:value="{N}"><text:p>{T}</text:p></table:table-cell></table:table-row>"#,
        r#"<table:table-cell table:number-columns-spanned="{N}" table:number-rows-spanned="{N}" office:value-type="string"><text:p>{T}</text:p></table:table-cell>"#,
        r#"<table:table-cell office:value-type="time" office:time-value="PT{N}H{N}M"/>"#,
        r#"<table:table-cell office:value-type="date" office:date-value="{T}"/>"#,
        r#"<table:table-cell office:value-type="percentage" office:value="{N}"/>"#,
        r#"<table:table-cell table:number-columns-repeated="{N}"/>"#,
        r#"<table:covered-table-cell table:number-columns-repeated="{N}"/>"#,
        r#"<table:table-row table:number-rows-repeated="{N}"/>"#,
        r#"<table:table table:name="{T}"><table:table-row><table:table-cell office:value-type="string"><text:p>{T}</text:p></table:table-cell></table:table-row></table:table>"#,
        r#"<text:p>{T}<text:s text:c="{N}"/>{T}</text:p>"#,
    ],
    wrappers: &[("<table:table-row>", "</table:table-row>"), ("<text:span>", "</text:span>")],
};

/// A tag in an XML text: byte range, name range, kind.
struct Tag {
    start: usize,
    end: usize,
    name: (usize, usize),
    closing: bool,
    empty: bool,
}

/// Element tags of an XML text (declarations, comments and processing instructions left out).
fn scan_tags(xml: &[u8]) -> Vec<Tag> {
    let mut tags = Vec::new();
    let mut i = 0;
    while let Some(off) = xml[i..].iter().position(|&b| b == b'<') {
        let start = i + off;
        let Some(len) = xml[start..].iter().position(|&b| b == b'>') else { break };
        let end = start + len + 1;
        i = end;
        let inner = &xml[start + 1..end - 1];
        if inner.first().is_some_and(|&b| b == b'?' || b == b'!') {
            continue;
        }
        let closing = inner.first() == Some(&b'/');
        let name_start = start + 1 + usize::from(closing);
        let name_len = xml[name_start..end - 1]
            .iter()
            .position(|&b| b.is_ascii_whitespace() || b == b'/' || b == b'>')
            .unwrap_or(end - 1 - name_start);
        tags.push(Tag {
            start,
            end,
            name: (name_start, name_start + name_len),
            closing,
            empty: !closing && inner.last() == Some(&b'/'),
        });
    }
    tags
}

/// The byte range of the element opened by `tags[k]` (the tag itself when empty or unclosed).
fn element(xml: &[u8], tags: &[Tag], k: usize) -> (usize, usize) {
    let t = &tags[k];
    if t.empty || t.closing {
        return (t.start, t.end);
    }
    let name = &xml[t.name.0..t.name.1];
    let mut depth = 0usize;
    for u in &tags[k + 1..] {
        if &xml[u.name.0..u.name.1] != name {
            continue;
        }
        if u.closing {
            if depth == 0 {
                return (t.start, u.end);
            }
            depth -= 1;
        } else if !u.empty {
            depth += 1;
        }
    }
    (t.start, t.end)
}

/// Fills the `{N}`, `{R}` and `{T}` holes of a snippet.
fn fill(rng: &mut Rng, snippet: &str) -> String {
    let mut out = String::new();
    let mut rest = snippet;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let hole = &rest[i..(i + 3).min(rest.len())];
        match hole {
            "{N}" => {
                let size = *rng.pick(SIZES);
                out.push_str(size);
            }
            "{R}" => out.push_str(&random_ref(rng)),
            "{T}" => out.push_str(&xml_text(rng)),
            _ => {
                out.push('{');
                rest = &rest[i + 1..];
                continue;
            }
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    out
}

/// Text for inside an element: usually escaped, sometimes raw entities and odd characters.
fn xml_text(rng: &mut Rng) -> String {
    let t = cell_text(rng);
    match rng.below(6) {
        0 => rng.pick(&["&amp;", "&lt;", "&#x41;", "&#0;", "&#x110000;", "&#xD800;", "&unknown;", "&", "&#;", "&#99999999999;", "]]>"]).to_string(),
        1 => t.repeat(rng.small(300)),
        _ => t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;"),
    }
}

/// Byte positions right after a tag: where an element or text may go.
fn boundary(rng: &mut Rng, tags: &[Tag], len: usize) -> usize {
    if tags.is_empty() { rng.below(len + 1) } else { rng.pick(tags).end }
}

/// A few element-aware edits of one XML part.
fn mutate_xml(rng: &mut Rng, xml: &mut Vec<u8>, vocab: &XmlVocab) {
    for _ in 0..rng.small(6) {
        let tags = scan_tags(xml);
        let len = xml.len();
        let opening: Vec<usize> = (0..tags.len()).filter(|&k| !tags[k].closing).collect();
        // Elements of the vocabulary first: they are what the readers look at.
        let pick_element = |rng: &mut Rng| -> Option<(usize, usize)> {
            if opening.is_empty() {
                return None;
            }
            let wanted = *rng.pick(vocab.tags);
            let named: Vec<usize> =
                opening.iter().copied().filter(|&k| &xml[tags[k].name.0..tags[k].name.1] == wanted.as_bytes()).collect();
            let k = if !named.is_empty() && rng.chance(2) { *rng.pick(&named) } else { *rng.pick(&opening) };
            Some(element(xml, &tags, k))
        };
        match rng.below(13) {
            0 => {
                // Duplicate an element, sometimes many times (row and cell bombs).
                if let Some((a, b)) = pick_element(rng) {
                    let copies = if rng.chance(4) { rng.small(400) } else { 1 };
                    let copy = xml[a..b].repeat(copies);
                    xml.splice(b..b, copy);
                }
            }
            1 => {
                if let Some((a, b)) = pick_element(rng) {
                    xml.drain(a..b);
                }
            }
            2 => {
                // Swap two elements that do not overlap.
                if let (Some((a, b)), Some((c, d))) = (pick_element(rng), pick_element(rng)) {
                    let ((a, b), (c, d)) = if a <= c { ((a, b), (c, d)) } else { ((c, d), (a, b)) };
                    if b <= c {
                        let first = xml[a..b].to_vec();
                        let second = xml[c..d].to_vec();
                        xml.splice(c..d, first);
                        xml.splice(a..b, second);
                    }
                }
            }
            3 => {
                // Nest an element deeply.
                if let Some((a, b)) = pick_element(rng) {
                    let (open, close) = *rng.pick(vocab.wrappers);
                    let depth = if rng.chance(3) { rng.small(1200) } else { rng.small(40) };
                    xml.splice(b..b, close.repeat(depth).into_bytes());
                    xml.splice(a..a, open.repeat(depth).into_bytes());
                }
            }
            4 => {
                // An attribute value that sizes or places something.
                let attr = format!("{}=\"", rng.pick(vocab.attrs));
                let hits: Vec<usize> =
                    xml.windows(attr.len()).enumerate().filter(|(_, w)| *w == attr.as_bytes()).map(|(i, _)| i).collect();
                if hits.is_empty() {
                    continue;
                }
                let at = *rng.pick(&hits) + attr.len();
                let end = xml[at..].iter().position(|&b| b == b'"').map_or(len, |p| at + p);
                let value = match rng.below(4) {
                    0 => random_ref(rng),
                    1 => xml_text(rng),
                    2 => rng.pick(&["restart", "continue", "inlineStr", "s", "n", "d", "e", "str", "b", "string", "float", "date", "time"]).to_string(),
                    _ => rng.pick(SIZES).to_string(),
                };
                xml.splice(at..end, value.into_bytes());
            }
            5 | 6 => {
                let snippet = *rng.pick(vocab.snippets);
                let snippet = fill(rng, snippet);
                let copies = if rng.chance(6) { rng.small(2000) } else { 1 };
                let at = boundary(rng, &tags, len);
                xml.splice(at..at, snippet.repeat(copies).into_bytes());
            }
            7 => {
                // Bytes that are not UTF-8, or entities, in text.
                let junk = *rng.pick::<&[u8]>(&[
                    &b"\xff\xfe"[..], b"\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xb8\xbd\xbc\xfe", b"\x00", b"&#0;", b"&bogus;",
                    b"&#x1F600;", b"]]>", b"<", b"\"", b"\xef\xbb\xbf",
                ]);
                let at = boundary(rng, &tags, len);
                xml.splice(at..at, junk.iter().copied());
            }
            8 => xml.truncate(rng.below(len + 1)),
            9 => {
                // Rename an element (both tags, or only the start: unbalanced).
                if opening.is_empty() {
                    continue;
                }
                let k = *rng.pick(&opening);
                let (a, b) = element(xml, &tags, k);
                let name = rng.pick(vocab.tags).as_bytes();
                let old = tags[k].name;
                if rng.chance(2) && b > tags[k].end {
                    let close_name = (b - 1 - (old.1 - old.0), b - 1);
                    if xml[close_name.0..close_name.1] == xml[old.0..old.1] {
                        xml.splice(close_name.0..close_name.1, name.iter().copied());
                    }
                }
                let _ = a;
                xml.splice(old.0..old.1, name.iter().copied());
            }
            10 => {
                // Move an element somewhere else.
                if let Some((a, b)) = pick_element(rng) {
                    let moved: Vec<u8> = xml.drain(a..b).collect();
                    let tags = scan_tags(xml);
                    let at = boundary(rng, &tags, xml.len());
                    xml.splice(at..at, moved);
                }
            }
            11 => {
                // Replace the text after a tag with form vocabulary.
                if tags.is_empty() {
                    continue;
                }
                let t = rng.pick(&tags);
                let end = xml[t.end..].iter().position(|&b| b == b'<').map_or(len, |p| t.end + p);
                xml.splice(t.end..end, xml_text(rng).into_bytes());
            }
            _ => havoc(rng, xml, &[]),
        }
    }
}

// ======================================================================= zip packages

/// A zip package taken apart: (member name, bytes) in order.
#[derive(Clone)]
struct Package(Vec<(String, Vec<u8>)>);

fn unzip(data: &[u8]) -> Package {
    let mut zip = zip::ZipArchive::new(Cursor::new(data)).expect("seed package is a zip");
    let mut parts = Vec::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).expect("seed member");
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).expect("seed member inflates");
        parts.push((String::from_utf8_lossy(f.name_raw()).into_owned(), bytes));
    }
    Package(parts)
}

/// Zips parts again, each stored or deflated at random. A name the writer refuses (a
/// duplicate) is left out.
fn rezip(rng: &mut Rng, parts: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in parts {
        let method = if rng.chance(2) { zip::CompressionMethod::Stored } else { zip::CompressionMethod::Deflated };
        let opts = zip::write::SimpleFileOptions::default().compression_method(method);
        if w.start_file(name.as_str(), opts).is_ok() {
            w.write_all(data).expect("writing to memory");
        }
    }
    w.finish().expect("finishing a zip in memory").into_inner()
}

/// A mutated package: XML parts mutated element-wise (the parts the reader looks at most
/// often), sometimes members dropped, copied or swapped, then re-zipped; sometimes the zip
/// bytes themselves are damaged afterwards.
fn mutate_package(rng: &mut Rng, seed: &Package, vocab: &XmlVocab, key_parts: &[&str], others: &[&[u8]]) -> Vec<u8> {
    let mut parts = seed.0.clone();
    for _ in 0..rng.small(3) {
        let xml: Vec<usize> =
            (0..parts.len()).filter(|&k| parts[k].0.ends_with(".xml") || parts[k].0.ends_with(".rels")).collect();
        let key: Vec<usize> = xml.iter().copied().filter(|&k| key_parts.contains(&parts[k].0.as_str())).collect();
        let k = if !key.is_empty() && !rng.chance(4) { *rng.pick(&key) } else if !xml.is_empty() { *rng.pick(&xml) } else { continue };
        mutate_xml(rng, &mut parts[k].1, vocab);
    }
    if rng.chance(6) && !parts.is_empty() {
        match rng.below(4) {
            0 => {
                let k = rng.below(parts.len());
                parts.remove(k);
            }
            1 => {
                // A copy of a part under the name of another kind of part (a second sheet).
                let k = rng.below(parts.len());
                let name = rng.pick(&["xl/worksheets/sheet2.xml", "word/document2.xml", "content.xml", "xl/sharedStrings.xml", "mimetype", "word/media/image9.png"]);
                let copy = parts[k].1.clone();
                parts.push((name.to_string(), copy));
            }
            2 => {
                let (a, b) = (rng.below(parts.len()), rng.below(parts.len()));
                let first = parts[a].1.clone();
                parts[a].1 = std::mem::replace(&mut parts[b].1, first);
            }
            _ => {
                let (a, b) = (rng.below(parts.len()), rng.below(parts.len()));
                parts.swap(a, b);
            }
        }
    }
    let mut out = rezip(rng, &parts);
    if rng.chance(10) {
        havoc(rng, &mut out, others);
    }
    out
}

// ======================================================================= .xls (BIFF in CFB)

/// The `Workbook` stream of an .xls, split into BIFF records (type, payload).
fn biff_records(xls: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut cf = cfb::CompoundFile::open(Cursor::new(xls)).expect("seed xls is a compound file");
    let mut stream = Vec::new();
    cf.open_stream("/Workbook").expect("seed xls has a Workbook stream").read_to_end(&mut stream).expect("read Workbook");
    let mut records = Vec::new();
    let mut i = 0;
    while i + 4 <= stream.len() {
        let kind = u16::from_le_bytes([stream[i], stream[i + 1]]);
        let len = usize::from(u16::from_le_bytes([stream[i + 2], stream[i + 3]]));
        let end = (i + 4 + len).min(stream.len());
        records.push((kind, stream[i + 4..end].to_vec()));
        i = end;
    }
    records
}

/// Record-level mutations of a workbook stream, written into a fresh compound file. Record
/// lengths are usually kept honest so the edits reach the cell and merge parsers.
fn mutate_xls(rng: &mut Rng, records: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut records = records.to_vec();
    let mut lie_about_length: Option<(usize, u16)> = None;
    for _ in 0..rng.small(6) {
        if records.is_empty() {
            break;
        }
        let k = rng.below(records.len());
        match rng.below(6) {
            0 | 1 => havoc(rng, &mut records[k].1, &[]),
            2 => {
                let copy = records[k].clone();
                let copies = if rng.chance(4) { rng.small(300) } else { 1 };
                for _ in 0..copies {
                    records.insert(k, copy.clone());
                }
            }
            3 => {
                records.remove(k);
            }
            4 => {
                let j = rng.below(records.len());
                records.swap(k, j);
            }
            _ => lie_about_length = Some((k, rng.next() as u16)),
        }
    }
    let mut stream = Vec::new();
    for (k, (kind, payload)) in records.iter().enumerate() {
        let payload = &payload[..payload.len().min(usize::from(u16::MAX))];
        let len = match lie_about_length {
            Some((at, lie)) if at == k => lie,
            _ => payload.len() as u16,
        };
        stream.extend_from_slice(&kind.to_le_bytes());
        stream.extend_from_slice(&len.to_le_bytes());
        stream.extend_from_slice(payload);
    }
    // Version 3 (512-byte sectors): calamine does not find the streams of a version 4 file.
    let mut cf = cfb::CompoundFile::create_with_version(cfb::Version::V3, Cursor::new(Vec::new())).expect("compound file in memory");
    cf.create_stream("/Workbook").and_then(|mut s| s.write_all(&stream)).expect("write Workbook");
    cf.flush().expect("flush compound file");
    cf.into_inner().into_inner()
}

// ======================================================================= seeds

struct Seeds {
    docx: Vec<Package>,
    xlsx: Vec<Package>,
    ods: Vec<Package>,
    xls: Vec<Vec<(u16, Vec<u8>)>>,
    /// Every seed file as bytes, for splicing.
    raw_files: Vec<Vec<u8>>,
    photos: Vec<(String, Vec<u8>)>,
    /// Documents as the readers return them for the seed files.
    documents: Vec<Document>,
    emls: Vec<Vec<u8>>,
    /// Complete submissions (full attachments) and the config that knows their senders.
    mails: Vec<MailSpec>,
}

fn fixture(path: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

const EMLS: &[&str] = &[
    "163webmail.eml", "applemail.eml", "auto_replied.eml", "bounce_report.eml", "encoded_word_split.eml",
    "foxmail72.eml", "octet_stream_no_disposition.eml", "outlook2016.eml", "outlook_forward_rfc822.eml",
    "outlook_oof.eml", "qq_autoreply_subject.eml", "qqmail.eml", "raw_gbk_filename.eml", "rfc2231_split.eml",
];

const CLIENTS: [MailClient; 7] =
    [MailClient::Outlook, MailClient::OutlookRtf, MailClient::Foxmail, MailClient::QqMail, MailClient::AppleMail, MailClient::Webmail163, MailClient::Wps];

fn units() -> Vec<UnitSpec> {
    vec![UnitSpec::sample(0, 1), UnitSpec::sample(1, 2), UnitSpec::enterprise(2, 1)]
}

fn seeds() -> &'static Seeds {
    static SEEDS: OnceLock<Seeds> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let studio = StudioSpec::sample(3);
        let unit = UnitSpec::sample(4, 2);
        let tools = [DocTool::Word, DocTool::Wps, DocTool::LibreOffice];
        let sheet_tools = [SheetTool::Excel, SheetTool::Wps, SheetTool::LibreOffice];
        let mut docx_files = Vec::new();
        for tool in tools {
            docx_files.push(fixtures::approval_form_docx(&studio, tool));
            docx_files.push(fixtures::summary_table_docx(&unit, tool));
        }
        docx_files.push(fixtures::materials_docx(&studio, 600, true, DocTool::Word));
        let mut xlsx_files = Vec::new();
        for tool in sheet_tools {
            xlsx_files.push(fixtures::approval_form_xlsx(&studio, tool));
            xlsx_files.push(fixtures::summary_table_xlsx(&unit, tool));
        }
        // Documents as editors leave them (tests/ooxml.rs): track changes, fields, check
        // boxes, altChunk parts, headers, a main part elsewhere; formulas, hidden rows,
        // columns and sheets, inline and rich strings, no cell references.
        for case in fixtures::ooxml_corpus() {
            if case.name.ends_with(".xlsx") {
                xlsx_files.push(case.data);
            } else {
                docx_files.push(case.data);
            }
        }
        let ods = fixture("grid/summary.ods");
        let xls = fixture("grid/summary.xls");
        let photos = vec![
            ("场景照.jpg".to_string(), fixtures::photo_jpeg(64, 48)),
            ("场景照.png".to_string(), fixtures::photo_png(40, 30)),
            ("IMG_0001.jpeg".to_string(), fixtures::photo_jpeg_quality(320, 240, 30)),
        ];
        let none = Converters::none();
        let mut documents = Vec::new();
        for (name, data) in docx_files.iter().map(|d| ("a.docx", d)).chain(xlsx_files.iter().map(|d| ("a.xlsx", d))) {
            documents.push(grid::read(name, data, &Limits::default(), &none).expect("seed document reads"));
        }
        documents.push(grid::read("a.ods", &ods, &Limits::default(), &none).expect("seed ods reads"));
        documents.push(grid::read("a.xls", &xls, &Limits::default(), &none).expect("seed xls reads"));
        let options = SubmissionOptions { photo_size: (160, 120), materials_chars: Some(2050), ..SubmissionOptions::default() };
        let mut mails = Vec::new();
        for (k, u) in units().iter().enumerate() {
            for (c, client) in CLIENTS.iter().enumerate() {
                let o = SubmissionOptions {
                    zip: [ZipMode::None, ZipMode::None, ZipMode::Utf8, ZipMode::Gbk][(k + c) % 4],
                    approval_as_xlsx: (k + c) % 5 == 1,
                    summary_as_docx: (k + c) % 3 == 2,
                    ..options.clone()
                };
                mails.push(fixtures::submission_mail(u, *client, &o));
            }
        }
        let mut raw_files: Vec<Vec<u8>> = docx_files.iter().chain(&xlsx_files).cloned().collect();
        raw_files.push(ods.clone());
        raw_files.push(xls.clone());
        raw_files.extend(photos.iter().map(|p| p.1.clone()));
        Seeds {
            docx: docx_files.iter().map(|d| unzip(d)).collect(),
            xlsx: xlsx_files.iter().map(|d| unzip(d)).collect(),
            ods: vec![unzip(&ods)],
            xls: vec![biff_records(&xls)],
            raw_files,
            photos,
            documents,
            emls: EMLS.iter().map(|n| fixture(&format!("eml/{n}"))).collect(),
            mails,
        }
    })
}

fn splice_partners(s: &Seeds) -> Vec<&[u8]> {
    s.raw_files.iter().map(Vec::as_slice).collect()
}

/// Default limits, or small ones that the mutations can actually reach.
fn limits(rng: &mut Rng) -> Limits {
    if rng.chance(2) {
        Limits::default()
    } else {
        Limits {
            max_message_bytes: 4 << 20,
            max_attachment_bytes: 1 << 20,
            max_archive_members: 8,
            max_decompressed_bytes: 2 << 20,
            max_depth: 2,
            max_parts: 24,
            max_cells: 1 + rng.below(4000) as u64,
            ..Limits::default()
        }
    }
}

// ======================================================================= grid oracle

const DOCX_PARTS: &[&str] = &[
    "word/document.xml", "[Content_Types].xml", "word/_rels/document.xml.rels", "_rels/.rels", "word/document2.xml",
    "word/_rels/document2.xml.rels", "word/header1.xml", "word/afchunk.htm",
];
const XLSX_PARTS: &[&str] = &[
    "xl/worksheets/sheet1.xml", "xl/sharedStrings.xml", "xl/workbook.xml", "[Content_Types].xml", "xl/_rels/workbook.xml.rels",
    "xl/styles.xml",
];
const ODS_PARTS: &[&str] = &["content.xml", "mimetype", "META-INF/manifest.xml"];

/// Reads a file twice and checks what the reader promises about the result.
fn check_read(file: &File, limits: &Limits) -> Result<(), String> {
    let none = Converters::none();
    let first = grid::read(&file.name, &file.data, limits, &none);
    let again = grid::read(&file.name, &file.data, limits, &none);
    if first != again {
        return Err(format!("the same file read twice gave different results:\n{first:?}\n{again:?}"));
    }
    let Ok(doc) = first else { return Ok(()) };
    let sniffed = grid::sniff(&file.name, &file.data);
    if doc.format != sniffed {
        return Err(format!("read as {:?} but sniffed as {sniffed:?}", doc.format));
    }
    check_tables(&doc, limits)
}

/// Tables as `grid::Table` documents them and within `Limits::max_cells`.
fn check_tables(doc: &Document, limits: &Limits) -> Result<(), String> {
    let mut total: u64 = 0;
    for t in doc.tables() {
        let width = t.width();
        if let Some(r) = t.rows.iter().position(|r| r.len() != width) {
            return Err(format!("{}: row {r} has {} cells, the table is {width} wide", t.label, t.rows[r].len()));
        }
        if t.rows.last().is_some_and(|r| r.iter().all(String::is_empty)) {
            return Err(format!("{}: trailing empty row kept", t.label));
        }
        if let Some(cell) = t.rows.iter().flatten().find(|c| c.trim() != c.as_str()) {
            return Err(format!("{}: cell text not trimmed: {cell:?}", t.label));
        }
        if let Some(cell) = t.rows.iter().flatten().find(|c| text::normalize(c) != c.as_str()) {
            return Err(format!("{}: cell text not normalised (text::normalize): {cell:?}", t.label));
        }
        let cells = (t.rows.len() * width) as u64;
        if cells > limits.max_cells {
            return Err(format!("{}: {} rows × {width} columns = {cells} cells, over max_cells {}", t.label, t.rows.len(), limits.max_cells));
        }
        total += cells;
    }
    if let Some(p) = doc.paragraphs().find(|p| p.is_empty() || text::normalize(p) != *p) {
        return Err(format!("paragraph not normalised (text::normalize): {p:?}"));
    }
    // The .docx reader counts the cells of all its tables together.
    if doc.format == Format::Docx && total > limits.max_cells {
        return Err(format!("document tables hold {total} cells, over max_cells {}", limits.max_cells));
    }
    Ok(())
}

// ======================================================================= targets: readers

#[test]
fn docx_reader() {
    let s = seeds();
    let partners = splice_partners(s);
    fuzz(
        "docx_reader",
        |rng| {
            let seed = rng.pick(&s.docx);
            let mut data = if rng.chance(12) {
                // Bytes of a package damaged directly (truncated, spliced).
                let mut d = rezip(rng, &seed.0);
                havoc(rng, &mut d, &partners);
                d
            } else {
                mutate_package(rng, seed, &DOCX_VOCAB, DOCX_PARTS, &partners)
            };
            if rng.chance(20) {
                data.truncate(rng.below(data.len() + 1));
            }
            let name = if rng.chance(10) { rng.pick(&["a.doc", "a", "附件1.DOCX", "a.xlsx", "a.zip"]).to_string() } else { "审批表.docx".into() };
            File { name, data }
        },
        |file, rng| check_read(file, &limits(rng)),
    );
}

#[test]
fn spreadsheet_readers() {
    let s = seeds();
    let partners = splice_partners(s);
    fuzz(
        "spreadsheet_readers",
        |rng| {
            let xlsx = rng.pick(&s.xlsx);
            let ods = rng.pick(&s.ods);
            let xls = rng.pick(&s.xls);
            let (name, data) = match rng.below(8) {
                0..=3 => ("汇总表.xlsx", mutate_package(rng, xlsx, &XLSX_VOCAB, XLSX_PARTS, &partners)),
                4 | 5 => ("汇总表.ods", mutate_package(rng, ods, &ODS_VOCAB, ODS_PARTS, &partners)),
                6 => ("汇总表.xls", mutate_xls(rng, xls)),
                _ => {
                    // The compound file itself damaged.
                    let mut d = mutate_xls(rng, xls);
                    havoc(rng, &mut d, &partners);
                    ("汇总表.xls", d)
                }
            };
            let name = if rng.chance(10) { rng.pick(&["a.et", "a", "a.xlsx", "a.ods", "a.xls", "a.docx"]).to_string() } else { name.to_string() };
            File { name, data }
        },
        |file, rng| check_read(file, &limits(rng)),
    );
}

// ======================================================================= target: mime

/// Charsets for encoded words and RFC 2231 values, real and bogus.
const CHARSETS: &[&str] = &[
    "gb2312", "GB2312", "gbk", "GBK", "gb18030", "utf-8", "UTF-8", "utf-8*zh-cn", "big5", "iso-8859-1", "us-ascii",
    "utf-7", "x-unknown", "", "gb2312\"", "utf-16", "windows-1252", "hz-gb-2312",
];

/// Bytes of `text` in a charset (GBK family and UTF-8 really encoded, others as UTF-8).
fn encode_in(charset: &str, text: &str) -> Vec<u8> {
    let label = charset.split('*').next().unwrap_or("");
    match encoding_rs::Encoding::for_label(label.as_bytes()) {
        Some(enc) if enc != encoding_rs::UTF_16LE && enc != encoding_rs::UTF_16BE => enc.encode(text).0.into_owned(),
        _ => text.as_bytes().to_vec(),
    }
}

/// An RFC 2047 encoded word (or several, split anywhere, also inside a character).
fn encoded_words(rng: &mut Rng, text: &str) -> String {
    let charset = *rng.pick(CHARSETS);
    let bytes = encode_in(charset, text);
    let pieces = if rng.chance(2) && bytes.len() > 1 {
        let cut = 1 + rng.below(bytes.len() - 1);
        vec![bytes[..cut].to_vec(), bytes[cut..].to_vec()]
    } else {
        vec![bytes]
    };
    let words: Vec<String> = pieces
        .iter()
        .map(|p| {
            if rng.chance(2) {
                let mut b64 = base64::engine::general_purpose::STANDARD.encode(p);
                if rng.chance(6) {
                    b64.insert(rng.below(b64.len() + 1), *rng.pick(&['=', '!', ' ', '?']));
                }
                format!("=?{charset}?{}?{b64}?=", rng.pick(&["B", "b"]))
            } else {
                let q: String = p.iter().map(|b| if b.is_ascii_alphanumeric() { (*b as char).to_string() } else { format!("={b:02X}") }).collect();
                format!("=?{charset}?{}?{q}?=", rng.pick(&["Q", "q"]))
            }
        })
        .collect();
    words.join(*rng.pick(&[" ", "\r\n ", "\r\n\t", "", "x"]))
}

/// An RFC 2231 parameter, continued, shuffled or broken.
fn rfc2231(rng: &mut Rng, param: &str, text: &str) -> String {
    let charset = *rng.pick(CHARSETS);
    let bytes = encode_in(charset, text);
    let pct: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
    let n = rng.small(4).min(pct.len() / 3).max(1);
    let step = pct.len().div_ceil(n).max(1);
    let mut pieces: Vec<String> = Vec::new();
    let mut k = 0;
    let mut at = 0;
    while at < pct.len() {
        let end = (at + step).min(pct.len());
        let chunk = &pct[at..end];
        let index = if rng.chance(10) { rng.pick(&["99999999999999999999", "-1", "01", "x"]).to_string() } else { k.to_string() };
        let head = if k == 0 { format!("{charset}'zh-cn'") } else { String::new() };
        pieces.push(format!("{param}*{index}*={head}{chunk}"));
        k += 1;
        at = end;
    }
    if rng.chance(5) {
        let (a, b) = (rng.below(pieces.len()), rng.below(pieces.len()));
        pieces.swap(a, b);
    }
    if rng.chance(6) {
        pieces.push(format!("{param}*=utf-8''%E4%{}", rng.pick(&["", "G1", "%", "B8"])));
    }
    pieces.join(*rng.pick(&[";\r\n ", "; ", ";"]))
}

/// A header line a mail client, a gateway or an attacker might write.
fn header_line(rng: &mut Rng) -> String {
    let text = cell_text(rng);
    let name = format!("{}.docx", label(rng));
    match rng.below(14) {
        0 => format!("Subject: {}", encoded_words(rng, &text)),
        1 => format!("From: {} <{}@{}>", encoded_words(rng, &text), hanzi(rng, 2), rng.pick(&["qq.com", "163.com", "", "例子.cn"])),
        2 => format!("Content-Type: application/octet-stream; name=\"{}\"", encoded_words(rng, &name)),
        3 => format!("Content-Disposition: attachment; {}", rfc2231(rng, "filename", &name)),
        4 => format!("Content-Type: multipart/{}; boundary=\"{}\"", rng.pick(&["mixed", "alternative", "related", "report"]), rng.pick(&["b", "", "----=_NextPart_000", " ", "--", "=_x\"y"])),
        5 => format!("Content-Transfer-Encoding: {}", rng.pick(&["base64", "quoted-printable", "8bit", "7bit", "binary", "x-uuencode", "BASE64 ", ""])),
        6 => format!("Date: {}", rng.pick(&["Mon, 14 Sep 2020 09:30:00 +0800", "14 Sep 2020 09:30 +0800 (CST)", "Mon, 31 Feb 2020 25:61:61 +9999", "yesterday", "", "Mon, 14 Sep 20 09:30:00 GMT", "Thu, 01 Jan 1970 00:00:00 -2400"])),
        7 => format!("Received: from x by y; {}", rng.pick(&["Mon, 14 Sep 2020 09:30:07 +0800", ";;;", "Sun, 99 Xyz 99999 99:99:99 +0800", ""])),
        8 => format!("Message-ID: {}", rng.pick(&["<a@b>", "<>", "<<>>", "a@b", "", "< a b @ c >", "<中文@例子>"])),
        9 => format!("{}: {}", rng.pick(&["Auto-Submitted", "Precedence", "X-Autoreply", "Return-Path", "List-Id", "X-Auto-Response-Suppress"]), rng.pick(&["auto-replied", "bulk", "yes", "<>", "OOF, All", "no", ""])),
        10 => format!("Content-Type: text/plain; charset={}", rng.pick(CHARSETS)),
        11 => format!("Content-Type: message/rfc822; name={}", encoded_words(rng, "转发.eml")),
        12 => {
            // Raw 8-bit GBK in a header, as some Windows clients write it.
            let mut line = b"Content-Disposition: attachment; filename=\"".to_vec();
            line.extend(encode_in("gbk", &name));
            line.push(b'"');
            String::from_utf8_lossy(&line).into_owned()
        }
        _ => format!("Content-Type: {}; name*={}", rng.pick(&["image/jpeg", "application/zip", "application/vnd.ms-excel", "text/html"]), rfc2231(rng, "name", &name)),
    }
}

/// Byte offsets of line starts.
fn line_starts(raw: &[u8]) -> Vec<usize> {
    std::iter::once(0).chain(raw.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1)).filter(|&i| i <= raw.len()).collect()
}

fn line_at(raw: &[u8], start: usize) -> (usize, usize) {
    let end = raw[start..].iter().position(|&b| b == b'\n').map_or(raw.len(), |p| start + p + 1);
    (start, end)
}

/// Header and MIME-structure edits of a raw message.
fn mutate_mail(rng: &mut Rng, raw: &mut Vec<u8>, partners: &[&[u8]]) {
    for _ in 0..rng.small(5) {
        let starts = line_starts(raw);
        let len = raw.len();
        match rng.below(14) {
            0 | 1 => {
                // A header line anywhere a header block may be (top or a part's head).
                let at = *rng.pick(&starts);
                let line = format!("{}\r\n", header_line(rng));
                raw.splice(at..at, line.into_bytes());
            }
            2 => {
                // A different boundary parameter.
                let needle = b"boundary=";
                let hits: Vec<usize> = raw.windows(needle.len()).enumerate().filter(|(_, w)| w.eq_ignore_ascii_case(needle)).map(|(i, _)| i + needle.len()).collect();
                if hits.is_empty() {
                    continue;
                }
                let at = *rng.pick(&hits);
                let end = raw[at..].iter().position(|&b| b == b';' || b == b'\r' || b == b'\n').map_or(len, |p| at + p);
                let value = rng.pick(&["\"\"", "x", "\"a b\"", "\"----=_Part\"", "\"=?utf-8?B?YQ==?=\"", "\"--\""]).to_string();
                let value = if rng.chance(8) { "b".repeat(rng.small(5000)) } else { value };
                raw.splice(at..end, value.into_bytes());
            }
            3 => {
                // Delimiter lines: drop one, duplicate one, or cut the closing one.
                let delims: Vec<usize> = starts.iter().copied().filter(|&s| raw[s..].starts_with(b"--")).collect();
                if delims.is_empty() {
                    continue;
                }
                let (a, b) = line_at(raw, *rng.pick(&delims));
                if rng.chance(2) {
                    raw.drain(a..b);
                } else {
                    let copy = raw[a..b].to_vec();
                    let at = *rng.pick(&starts);
                    raw.splice(at..at, copy);
                }
            }
            4 => {
                let (a, b) = line_at(raw, *rng.pick(&starts));
                match rng.below(3) {
                    0 => {
                        raw.drain(a..b);
                    }
                    1 => {
                        let copy = raw[a..b].repeat(rng.small(50));
                        raw.splice(b..b, copy);
                    }
                    _ => {
                        let (c, d) = line_at(raw, *rng.pick(&starts));
                        if b <= c {
                            let first = raw[a..b].to_vec();
                            let second = raw[c..d].to_vec();
                            raw.splice(c..d, first);
                            raw.splice(a..b, second);
                        }
                    }
                }
            }
            5 => {
                // Damage a base64 body line.
                let b64: Vec<usize> = starts
                    .iter()
                    .copied()
                    .filter(|&s| {
                        let (a, b) = line_at(raw, s);
                        b - a > 40 && raw[a..b].iter().all(|c| c.is_ascii_alphanumeric() || b"+/=\r\n".contains(c))
                    })
                    .collect();
                if b64.is_empty() {
                    continue;
                }
                let (a, b) = line_at(raw, *rng.pick(&b64));
                let at = a + rng.below(b - a);
                match rng.below(4) {
                    0 => raw.insert(at, *rng.pick(&[b'=', b'!', b' ', b'-', b'.', 0xff])),
                    1 => {
                        raw.remove(at);
                    }
                    2 => {
                        // Join with the next line.
                        if b >= 2 && raw[b - 2] == b'\r' {
                            raw.drain(b - 2..b);
                        } else if raw[b - 1] == b'\n' {
                            raw.remove(b - 1);
                        }
                    }
                    _ => raw.splice(at..at, b"==\r\n".iter().copied()).for_each(drop),
                }
            }
            6 => {
                // Nest the whole message in multiparts or forwarded messages.
                let depth = if rng.chance(4) { rng.small(300) } else { rng.small(6) };
                let forwarded = rng.chance(2);
                for d in 0..depth {
                    let mut outer = if forwarded {
                        b"From: a@b.cn\r\nSubject: Fw\r\nContent-Type: message/rfc822\r\n\r\n".to_vec()
                    } else {
                        format!("From: a@b.cn\r\nContent-Type: multipart/mixed; boundary=\"n{d}\"\r\n\r\n--n{d}\r\n").into_bytes()
                    };
                    outer.append(raw);
                    if !forwarded && rng.chance(2) {
                        outer.extend_from_slice(format!("\r\n--n{d}--\r\n").as_bytes());
                    }
                    *raw = outer;
                }
            }
            7 => {
                // Fold a line somewhere, or break a line with a bare CR.
                if len == 0 {
                    continue;
                }
                let at = rng.below(len);
                let fold = *rng.pick::<&[u8]>(&[&b"\r\n "[..], b"\r\n\t", b"\n ", b"\r", b"\r\n\r\n"]);
                raw.splice(at..at, fold.iter().copied());
            }
            8 => {
                // Line endings: CRLF to LF, or LF to CRLF (doubling existing CRs).
                if rng.chance(2) {
                    raw.retain(|&b| b != b'\r');
                } else {
                    let mut out = Vec::with_capacity(len + len / 20);
                    for &b in raw.iter() {
                        if b == b'\n' {
                            out.push(b'\r');
                        }
                        out.push(b);
                    }
                    *raw = out;
                }
            }
            9 => {
                // A file name parameter rewritten.
                let hits: Vec<usize> = raw.windows(5).enumerate().filter(|(_, w)| w.eq_ignore_ascii_case(b"name=")).map(|(i, _)| i + 5).collect();
                if hits.is_empty() {
                    continue;
                }
                let at = *rng.pick(&hits);
                let end = raw[at..].iter().position(|&b| b == b';' || b == b'\n').map_or(len, |p| at + p);
                let text = format!("{}{}", label(rng), rng.pick(&[".docx", ".xlsx", ".jpg", ".zip", ".eml", "", ".tar.gz", ".docx\u{202e}gpj"]));
                let value = if rng.chance(2) { format!("\"{}\"", encoded_words(rng, &text)) } else { format!("\"{}\"", text) };
                raw.splice(at..end, value.into_bytes());
            }
            10 => {
                if let Some(&at) = starts.get(rng.below(starts.len())) {
                    raw.truncate(at);
                }
            }
            11 => {
                // A header field with a huge value or thousands of parameters.
                let at = *rng.pick(&starts);
                let line = if rng.chance(2) {
                    format!("Subject: {}\r\n", "=?gbk?B?uL28/g==?= ".repeat(rng.small(3000)))
                } else {
                    format!("Content-Type: text/plain{}\r\n", ";a=b".repeat(rng.small(5000)))
                };
                raw.splice(at..at, line.into_bytes());
            }
            _ => havoc(rng, raw, partners),
        }
    }
}

/// A name an applicant's mail client might give an attachment.
fn attachment_name(rng: &mut Rng, old: &str) -> String {
    match rng.below(6) {
        0 => String::new(),
        1 => format!("../../{}", old),
        2 => format!("{}{}", retype(rng, old), rng.pick(&["", ".docx", ".exe"])),
        3 => "很长的文件名".repeat(rng.small(200)),
        4 => format!("\u{202e}{}", old),
        _ => format!("{}/{}", hanzi(rng, 4), old),
    }
}

/// One attachment mutated by what it is: packages and photos structure-aware.
fn mutate_attachment(rng: &mut Rng, name: &str, data: &mut Vec<u8>, partners: &[&[u8]]) {
    let lower = name.to_lowercase();
    if lower.ends_with(".docx") || lower.ends_with(".xlsx") {
        if let Ok(mut zip) = zip::ZipArchive::new(Cursor::new(data.as_slice())) {
            let mut parts = Vec::new();
            for i in 0..zip.len() {
                if let Ok(mut f) = zip.by_index(i) {
                    let mut bytes = Vec::new();
                    if f.read_to_end(&mut bytes).is_ok() {
                        parts.push((String::from_utf8_lossy(f.name_raw()).into_owned(), bytes));
                    }
                }
            }
            let (vocab, key) = if lower.ends_with(".docx") { (&DOCX_VOCAB, DOCX_PARTS) } else { (&XLSX_VOCAB, XLSX_PARTS) };
            *data = mutate_package(rng, &Package(parts), vocab, key, partners);
            return;
        }
    } else if lower.ends_with(".zip") && rng.chance(2) {
        // Members changed inside the archive, or members added (count and nesting limits).
        if let Ok(mut zip) = zip::ZipArchive::new(Cursor::new(data.as_slice())) {
            let mut members = Vec::new();
            for i in 0..zip.len() {
                if let Ok(mut f) = zip.by_index(i) {
                    let mut bytes = Vec::new();
                    if f.read_to_end(&mut bytes).is_ok() {
                        members.push((String::from_utf8_lossy(f.name_raw()).into_owned(), bytes));
                    }
                }
            }
            if !members.is_empty() {
                let k = rng.below(members.len());
                let (member_name, mut bytes) = members[k].clone();
                mutate_attachment(rng, &member_name, &mut bytes, partners);
                members[k].1 = bytes;
                if rng.chance(4) {
                    let copy = members[k].clone();
                    for n in 0..rng.small(300) {
                        members.push((format!("{n}/{}", copy.0), copy.1.clone()));
                    }
                }
                if rng.chance(4) {
                    // A zip inside the zip.
                    let inner = zip_of(&mut members, rng.chance(2));
                    members.push(("内层.zip".into(), inner));
                }
            }
            *data = zip_of(&mut members, rng.chance(2));
            return;
        }
    } else if lower.ends_with(".jpg") || lower.ends_with(".jpeg") || lower.ends_with(".png") {
        mutate_photo(rng, data);
        return;
    }
    havoc(rng, data, partners);
}

/// A submission mail rebuilt from mutated parts, then mutated as raw text.
fn mutated_submission(rng: &mut Rng, s: &Seeds, partners: &[&[u8]]) -> Vec<u8> {
    let mut spec = rng.pick(&s.mails).clone();
    for _ in 0..rng.small(3) {
        if spec.attachments.is_empty() {
            break;
        }
        let k = rng.below(spec.attachments.len());
        match rng.below(8) {
            0..=3 => {
                let (name, mut data) = spec.attachments[k].clone();
                mutate_attachment(rng, &name, &mut data, partners);
                spec.attachments[k].1 = data;
            }
            4 => spec.attachments[k].0 = attachment_name(rng, &spec.attachments[k].0),
            5 => {
                spec.attachments.remove(k);
            }
            6 => {
                let copy = spec.attachments[k].clone();
                spec.attachments.push(copy);
            }
            _ => {
                spec.subject = retype(rng, &spec.subject);
                spec.from_name = cell_text(rng);
                spec.client = *rng.pick(&CLIENTS);
            }
        }
    }
    let mut raw = fixtures::build_eml(&spec);
    if rng.chance(2) {
        mutate_mail(rng, &mut raw, partners);
    }
    raw
}

/// What `mime::parse` promises about a message it returns.
fn check_message(m: &mime::Message, limits: &Limits) -> Result<(), String> {
    if m.attachments.len() as u64 > u64::from(limits.max_parts) {
        return Err(format!("{} attachments, over max_parts {}", m.attachments.len(), limits.max_parts));
    }
    if let Some(id) = &m.message_id
        && !(id.starts_with('<') && id.ends_with('>'))
    {
        return Err(format!("message id {id:?} not in angle brackets"));
    }
    if m.subject.chars().any(char::is_control) {
        return Err(format!("control character left in the subject {:?}", m.subject));
    }
    if let Some(from) = &m.from
        && (from.address.is_empty() || from.address.chars().any(|c| c.is_ascii_whitespace() || c.is_control()))
    {
        return Err(format!("sender address {:?} empty or with white space", from.address));
    }
    for (i, a) in m.attachments.iter().enumerate() {
        if a.file_name.is_empty() || a.file_name.contains(['/', '\\']) || a.file_name.chars().any(char::is_control) {
            return Err(format!("attachment {i}: file name {:?} is not one clean path component", a.file_name));
        }
        if a.problem.is_none() && (a.data.is_empty() || a.data.len() as u64 > limits.max_attachment_bytes) {
            return Err(format!("attachment {i} ({}) without a problem has {} bytes", a.name, a.data.len()));
        }
        if let Some(z) = a.archive
            && (z >= i || !matches!(m.attachments[z].content_type.as_str(), "application/zip" | "application/ms-tnef"))
        {
            return Err(format!("attachment {i} ({}) names archive {z}, which is not an earlier zip or winmail.dat", a.name));
        }
    }
    Ok(())
}

/// Everything of a parsed message, attachment bytes included, for determinism checks.
fn message_fingerprint(m: &mime::Message) -> String {
    let data: Vec<&[u8]> = m.attachments.iter().map(|a| a.data.as_slice()).collect();
    let problems: Vec<_> = m.attachments.iter().map(|a| &a.problem).collect();
    format!("{}\n{data:?}\n{problems:?}", serde_json::to_string(m).unwrap_or_default())
}

#[test]
fn mime_adapter() {
    let s = seeds();
    let partners = splice_partners(s);
    fuzz(
        "mime_adapter",
        |rng| {
            if rng.chance(3) {
                let mut raw = rng.pick(&s.emls).clone();
                mutate_mail(rng, &mut raw, &partners);
                raw
            } else {
                mutated_submission(rng, s, &partners)
            }
        },
        |raw, rng| {
            let limits = limits(rng);
            let first = mime::parse(raw, &limits);
            let again = mime::parse(raw, &limits);
            match (&first, &again) {
                (Ok(a), Ok(b)) => {
                    if message_fingerprint(a) != message_fingerprint(b) {
                        return Err("the same message parsed twice gave different results".into());
                    }
                    check_message(a, &limits)
                }
                (Err(a), Err(b)) if a == b => Ok(()),
                _ => Err(format!("the same message parsed twice: {:?} then {:?}", first.as_ref().err(), again.as_ref().err())),
            }
        },
    );
}

// ======================================================================= target: form parsers

/// A form parser input: a document, or photo bytes.
enum FormInput {
    Doc(Document),
    Photo { name: String, data: Vec<u8> },
}

impl Input for FormInput {
    fn size(&self) -> usize {
        match self {
            FormInput::Doc(d) => d.text().len(),
            FormInput::Photo { data, .. } => data.len(),
        }
    }
    fn to_bytes(&self) -> Vec<u8> {
        match self {
            FormInput::Doc(d) => serde_json::to_vec_pretty(d).unwrap_or_default(),
            FormInput::Photo { data, .. } => data.clone(),
        }
    }
    fn note(&self) -> String {
        match self {
            FormInput::Doc(_) => "document (as JSON)".into(),
            FormInput::Photo { name, .. } => format!("photo {name:?}"),
        }
    }
}

/// A random table: vocabulary cells, merged regions repeated, empty rows, sometimes ragged.
fn random_table(rng: &mut Rng, n: usize) -> Table {
    let rows = rng.small(40);
    let width = rng.small(16);
    let mut grid: Vec<Vec<String>> = (0..rows).map(|_| (0..width).map(|_| cell_text(rng)).collect()).collect();
    for _ in 0..rng.small(8) {
        // A merged region repeats its value (see grid::Table).
        let (r, c) = (rng.below(rows), rng.below(width));
        let value = grid[r][c].clone();
        let (h, w) = (rng.small(rows - r), rng.small(width - c));
        for row in grid.iter_mut().skip(r).take(h) {
            for cell in row.iter_mut().skip(c).take(w) {
                cell.clone_from(&value);
            }
        }
    }
    for row in grid.iter_mut() {
        if rng.chance(8) {
            row.iter_mut().for_each(String::clear);
        }
        if rng.chance(12) {
            row.truncate(rng.below(width + 1));
        }
    }
    let is_sheet = rng.chance(2);
    Table { label: if is_sheet { format!("工作表“Sheet{n}”") } else { format!("表格{n}") }, is_sheet, rows: grid }
}

fn random_document(rng: &mut Rng) -> Document {
    let mut blocks = Vec::new();
    let mut tables = 0;
    for _ in 0..rng.small(10) {
        if rng.chance(2) {
            tables += 1;
            blocks.push(Block::Table(random_table(rng, tables)));
        } else {
            // Paragraphs; lines with runs of spaces are what pdftotext gives.
            let p = (0..rng.small(6)).map(|_| cell_text(rng)).collect::<Vec<_>>().join(*rng.pick(&["  ", " ", "\t", "\n", "   "]));
            blocks.push(Block::Paragraph(p));
        }
    }
    let format = *rng.pick(&[Format::Docx, Format::Xlsx, Format::Pdf, Format::Doc, Format::Xls, Format::Ods]);
    Document { format, blocks, embedded_images: rng.below(3), pictures: Vec::new() }
}

/// A real document's tables edited: cells replaced, retyped, cut; rows and columns dropped
/// or copied; tables turned into lines of text.
fn mutate_document(rng: &mut Rng, doc: &Document) -> Document {
    let mut doc = doc.clone();
    for _ in 0..rng.small(12) {
        let tables: Vec<usize> = (0..doc.blocks.len()).filter(|&k| matches!(doc.blocks[k], Block::Table(_))).collect();
        if tables.is_empty() || rng.chance(10) {
            let at = rng.below(doc.blocks.len() + 1);
            doc.blocks.insert(at, Block::Paragraph(cell_text(rng)));
            continue;
        }
        let k = *rng.pick(&tables);
        if rng.chance(12) {
            // As pdftotext would give it: lines, cells parted by runs of spaces.
            let Block::Table(t) = &doc.blocks[k] else { continue };
            let lines: Vec<Block> = t.rows.iter().map(|r| Block::Paragraph(r.join("   "))).collect();
            doc.blocks.splice(k..=k, lines);
            continue;
        }
        let Block::Table(t) = &mut doc.blocks[k] else { continue };
        if t.rows.is_empty() {
            continue;
        }
        let r = rng.below(t.rows.len());
        let width = t.rows[r].len();
        match rng.below(9) {
            0 | 1 if width > 0 => {
                let c = rng.below(width);
                t.rows[r][c] = cell_text(rng);
            }
            2 if width > 0 => {
                let c = rng.below(width);
                t.rows[r][c] = retype(rng, &t.rows[r][c].clone());
            }
            3 if width > 0 => {
                let c = rng.below(width);
                let cell = &mut t.rows[r][c];
                let keep = rng.below(cell.chars().count() + 1);
                *cell = cell.chars().take(keep).collect();
            }
            4 => {
                let copy = t.rows[r].clone();
                t.rows.insert(rng.below(t.rows.len() + 1), copy);
            }
            5 => {
                t.rows.remove(r);
            }
            6 if width > 0 => {
                let c = rng.below(width);
                for row in t.rows.iter_mut() {
                    if c < row.len() {
                        row.remove(c);
                    }
                }
            }
            7 if width > 1 => {
                // A value repeated to the right, as a merge does.
                let c = rng.below(width - 1);
                let v = t.rows[r][c].clone();
                t.rows[r][c + 1] = v;
            }
            _ => t.is_sheet = !t.is_sheet,
        }
    }
    doc
}

/// Photo bytes with their headers aimed at: sizes in SOF/IHDR, truncation, bytes.
fn mutate_photo(rng: &mut Rng, data: &mut Vec<u8>) {
    match rng.below(4) {
        0 => {
            // JPEG SOFn height/width, or PNG IHDR width/height.
            let sof = data.windows(2).position(|w| w[0] == 0xff && (0xc0..=0xc3).contains(&w[1]));
            let field = if data.starts_with(b"\x89PNG") { Some(16 + 4 * rng.below(2)) } else { sof.map(|p| p + 5 + 2 * rng.below(2)) };
            if let Some(at) = field.filter(|&a| a + 4 <= data.len()) {
                let v: u32 = *rng.pick(&[0, 1, 0xffff, 0xffff_ffff, 0x8000_0000, 300, 299]);
                if data.starts_with(b"\x89PNG") {
                    data[at..at + 4].copy_from_slice(&v.to_be_bytes());
                } else {
                    data[at..at + 2].copy_from_slice(&(v as u16).to_be_bytes());
                }
            }
        }
        1 => data.truncate(rng.below(data.len() + 1)),
        _ => havoc(rng, data, &[]),
    }
}

fn photo_fingerprint(r: &Result<forms::Photo, String>) -> String {
    format!("{r:?}")
}

/// What the form parsers promise, and the same answer twice.
fn check_forms(doc: &Document) -> Result<(), String> {
    let kind = forms::kind_from_content(doc);
    if kind != forms::kind_from_content(doc) {
        return Err("kind_from_content not deterministic".into());
    }
    let form = forms::parse_approval_form("a.docx", doc);
    let again = forms::parse_approval_form("a.docx", doc);
    if form.fields != again.fields {
        return Err("parse_approval_form not deterministic".into());
    }
    // Every field of the form is reported exactly once, with where it is or was looked for.
    let empty = forms::parse_approval_form("a.docx", &Document { format: Format::Docx, blocks: Vec::new(), embedded_images: 0, pictures: Vec::new() });
    let keys: Vec<forms::FieldKey> = form.fields.iter().map(|f| f.key).collect();
    let expected: Vec<forms::FieldKey> = empty.fields.iter().map(|f| f.key).collect();
    if keys != expected {
        return Err(format!("approval form fields {keys:?}, expected {expected:?}"));
    }
    if let Some(f) = form.fields.iter().find(|f| f.location.trim().is_empty()) {
        return Err(format!("field {} has no location", f.key));
    }
    let summary = forms::parse_summary_table("b.xlsx", doc);
    let again = forms::parse_summary_table("b.xlsx", doc);
    if serde_json::to_string(&summary).ok() != serde_json::to_string(&again).ok() {
        return Err("parse_summary_table not deterministic".into());
    }
    if !summary.has_header && !summary.rows.is_empty() {
        return Err("summary rows without a header".into());
    }
    for row in &summary.rows {
        if !row.cells.iter().any(|f| f.key != forms::FieldKey::Rank && f.filled().is_some()) {
            return Err(format!("summary row {} has nothing besides 序号", row.row_label));
        }
        if let Some(f) = row.cells.iter().find(|f| f.location.trim().is_empty()) {
            return Err(format!("summary cell {} of row {} has no location", f.key, row.row_label));
        }
    }
    let materials = forms::parse_materials("c.docx", doc);
    let again = forms::parse_materials("c.docx", doc);
    if (materials.chars, materials.headings, &materials.text) != (again.chars, again.headings, &again.text) {
        return Err("parse_materials not deterministic".into());
    }
    if materials.chars != text::count_chars(&doc.text()) {
        return Err(format!("materials count {} characters, the text has {}", materials.chars, text::count_chars(&doc.text())));
    }
    Ok(())
}

#[test]
fn form_parsers() {
    let s = seeds();
    fuzz(
        "form_parsers",
        |rng| match rng.below(8) {
            0..=2 => {
                let doc = rng.pick(&s.documents);
                FormInput::Doc(mutate_document(rng, doc))
            }
            3..=5 => FormInput::Doc(random_document(rng)),
            _ => {
                let (name, photo) = rng.pick(&s.photos);
                let mut data = photo.clone();
                for _ in 0..rng.small(3) {
                    mutate_photo(rng, &mut data);
                }
                let name = if rng.chance(8) { attachment_name(rng, name) } else { name.clone() };
                FormInput::Photo { name, data }
            }
        },
        |input, _| match input {
            FormInput::Doc(doc) => check_forms(doc),
            FormInput::Photo { name, data } => {
                let first = forms::parse_photo(name, data);
                if photo_fingerprint(&first) != photo_fingerprint(&forms::parse_photo(name, data)) {
                    return Err("parse_photo not deterministic".into());
                }
                match first {
                    Ok(p) if p.width == 0 || p.height == 0 => Err(format!("photo read as {}×{}", p.width, p.height)),
                    _ => Ok(()),
                }
            }
        },
    );
}

// ======================================================================= target: pipeline

/// The built-in config with the seed units' senders registered; once with default limits,
/// once with small ones.
fn configs() -> &'static [Config; 2] {
    static CONFIGS: OnceLock<[Config; 2]> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let mut c = Config::builtin();
        for u in units() {
            c.units.retain(|x| x.name != u.unit);
            c.units.push(Unit { name: u.unit.clone(), kind: UnitKind::County, senders: vec![u.sender.clone()] });
        }
        let mut small = c.clone();
        small.limits = Limits {
            max_attachment_bytes: 1 << 20,
            max_archive_members: 8,
            max_decompressed_bytes: 4 << 20,
            max_depth: 2,
            max_parts: 24,
            max_cells: 2000,
            ..Limits::default()
        };
        [c, small]
    })
}

/// Findings name a code of their own severity, say where and what, and point at files
/// that are in the mail.
fn check_outcome(o: &core::Outcome) -> Result<(), String> {
    if o.submission.attachments.len() != o.message.attachments.len() {
        return Err(format!(
            "{} attachments in the mail, {} classified",
            o.message.attachments.len(),
            o.submission.attachments.len()
        ));
    }
    let show = |f: &Finding| format!("{} (file {:?}, location {:?}, message {:?})", f.code.as_str(), f.file, f.location, f.message);
    for f in &o.findings {
        if f.severity != f.code.severity() {
            return Err(format!("finding {} has severity {:?}", show(f), f.severity));
        }
        if f.location.trim().is_empty() || f.message.trim().is_empty() {
            return Err(format!("finding {} does not say where or what", show(f)));
        }
        if let Some(file) = &f.file
            && !o.message.attachments.iter().any(|a| &a.name == file)
        {
            return Err(format!("finding {} names a file that is not in the mail", show(f)));
        }
    }
    Ok(())
}

fn outcome_fingerprint(o: &core::Outcome) -> String {
    format!(
        "{}\n{}\n{:?}\n{:?}\n{:?}",
        serde_json::to_string(&o.message).unwrap_or_default(),
        serde_json::to_string(&o.submission).unwrap_or_default(),
        o.findings,
        o.unit,
        o.received_at
    )
}

#[test]
fn whole_pipeline() {
    let s = seeds();
    let partners = splice_partners(s);
    let converters = Converters::none();
    fuzz(
        "whole_pipeline",
        |rng| mutated_submission(rng, s, &partners),
        |raw, rng| {
            let config = &configs()[rng.below(2)];
            let ctx = Context::new(config.policy(), &converters);
            let Ok(outcome) = core::process(raw, &ctx) else { return Ok(()) };
            check_outcome(&outcome)?;
            // Running the pipeline twice is costly: check determinism on a quarter of inputs.
            if rng.chance(4) {
                let again = core::process(raw, &ctx).map_err(|e| format!("second run failed: {e}"))?;
                if outcome_fingerprint(&outcome) != outcome_fingerprint(&again) {
                    return Err("the same mail processed twice gave different outcomes".into());
                }
            }
            Ok(())
        },
    );
}

/// A zip of `members` by the fixture writer, which refuses a name twice: later copies of a
/// name are dropped first.
fn zip_of(members: &mut Vec<(String, Vec<u8>)>, gbk_names: bool) -> Vec<u8> {
    let mut names = std::collections::HashSet::new();
    members.retain(|(name, _)| names.insert(name.clone()));
    fixtures::zip_archive(members, gbk_names)
}
