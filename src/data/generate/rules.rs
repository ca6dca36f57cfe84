//! Rules: sampling with constraint pruning (§2.5), row construction (§2.6) and the checks the
//! solver scores candidates with (§2.9). Rule state (Distribute_Three rows) is per problem.

use super::grammar::{new_slot_set, Attr, Layout, Range, Ranges};
use crate::rng::Rng;

/// The Number/Position rule of a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NpRule {
    /// Number and positions stay the same along a row.
    Constant,
    /// The count changes by the step (±1 or ±2) from column to column.
    ProgressionNumber(i32),
    /// Every entity moves by the step (±1 or ±2) slots, cyclically, from column to column.
    ProgressionPosition(i32),
    /// Column 3's count is column 1's plus (`+1`) or minus (`−1`) column 2's.
    ArithmeticNumber(i32),
    /// Column 3's slot set is the union (`+1`) or difference (`−1`) of columns 1 and 2.
    ArithmeticPosition(i32),
    /// Three distinct counts, each row a rotation of the first row's.
    DistributeThreeNumber,
    /// Three distinct slot sets of one size, each row a rotation of the first row's.
    DistributeThreePosition,
}

/// A rule on Type, Size or Color.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityRule {
    /// The level stays the same along a row.
    Constant,
    /// The level changes by the step (±1 or ±2) from column to column.
    Progression(i32),
    /// Column 3's level is column 1's plus (`+1`) or minus (`−1`) column 2's (Size adds or
    /// subtracts one more, as the originals do); never on Type.
    Arithmetic(i32),
    /// Three distinct levels, each row a rotation of the first row's.
    DistributeThree,
}

/// `META_TARGET_FORMAT` column of a rule name.
pub fn rule_column(name: &str) -> usize {
    ["Constant", "Progression", "Arithmetic", "Distribute_Three"]
        .iter()
        .position(|n| *n == name)
        .expect("rule name")
}

impl NpRule {
    /// (rule name, attribute name) as in the XML and `meta_matrix`.
    pub fn names(self) -> (&'static str, &'static str) {
        match self {
            NpRule::Constant => ("Constant", "Number/Position"),
            NpRule::ProgressionNumber(_) => ("Progression", "Number"),
            NpRule::ProgressionPosition(_) => ("Progression", "Position"),
            NpRule::ArithmeticNumber(_) => ("Arithmetic", "Number"),
            NpRule::ArithmeticPosition(_) => ("Arithmetic", "Position"),
            NpRule::DistributeThreeNumber => ("Distribute_Three", "Number"),
            NpRule::DistributeThreePosition => ("Distribute_Three", "Position"),
        }
    }
    /// Whether the rule changes the count (then positions are random and entities regenerated).
    pub fn on_number(self) -> bool {
        matches!(
            self,
            NpRule::ProgressionNumber(_)
                | NpRule::ArithmeticNumber(_)
                | NpRule::DistributeThreeNumber
        )
    }
    /// Whether columns 2–3 get freshly generated entities rather than copies.
    pub fn regenerates(self) -> bool {
        self.on_number() || matches!(self, NpRule::ArithmeticPosition(_))
    }

    /// The rule's effect on the Number range, `None` if it cannot apply (§2.5 pruning table).
    fn prune(self, r: Range) -> Option<Range> {
        let Range { mut min, mut max } = r;
        match self {
            NpRule::Constant => {}
            NpRule::ProgressionNumber(v) if v > 0 => max -= 2 * v,
            NpRule::ProgressionNumber(v) => min += 2 * v.abs(),
            NpRule::ProgressionPosition(v) => max -= 2 * v.abs(),
            NpRule::ArithmeticNumber(v) if v > 0 => max = max - min - 1,
            NpRule::ArithmeticNumber(_) => min = 2 * min + 1,
            NpRule::ArithmeticPosition(v) if v > 0 => max -= 1,
            NpRule::ArithmeticPosition(_) => {
                min = (max + 2).div_euclid(2) - 1;
                max -= 1;
            }
            NpRule::DistributeThreeNumber if r.len() < 3 => return None,
            NpRule::DistributeThreeNumber => {}
            NpRule::DistributeThreePosition if max + 1 < 3 => return None,
            NpRule::DistributeThreePosition => max -= 1,
        }
        let out = Range::new(min, max);
        (!out.is_empty()).then_some(out)
    }
}

impl EntityRule {
    /// The rule's name as in the XML and `meta_matrix` (`Constant`, `Progression`,
    /// `Arithmetic`, `Distribute_Three`).
    pub fn name(self) -> &'static str {
        match self {
            EntityRule::Constant => "Constant",
            EntityRule::Progression(_) => "Progression",
            EntityRule::Arithmetic(_) => "Arithmetic",
            EntityRule::DistributeThree => "Distribute_Three",
        }
    }

    fn prune(self, attr: Attr, r: Range) -> Option<Range> {
        let Range { mut min, mut max } = r;
        match (self, attr) {
            (EntityRule::Constant, _) => {}
            (EntityRule::Progression(v), _) if v > 0 => max -= 2 * v,
            (EntityRule::Progression(v), _) => min += 2 * v.abs(),
            (EntityRule::Arithmetic(_), Attr::Type) => return None,
            (EntityRule::Arithmetic(v), Attr::Size) if v > 0 => max = max - min - 1,
            (EntityRule::Arithmetic(_), Attr::Size) => min = 2 * min + 1,
            (EntityRule::Arithmetic(_), Attr::Color) if max - min < 1 => return None,
            (EntityRule::Arithmetic(v), Attr::Color) if v > 0 => max -= min,
            (EntityRule::Arithmetic(_), Attr::Color) => min *= 2,
            (EntityRule::DistributeThree, _) if r.len() < 3 => return None,
            (EntityRule::DistributeThree, _) => {}
        }
        let out = Range::new(min, max);
        (!out.is_empty()).then_some(out)
    }
}

/// The 4 rules of one component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleGroup {
    /// The Number/Position rule.
    pub np: NpRule,
    /// The Type rule (never `Arithmetic`).
    pub ty: EntityRule,
    /// The Size rule.
    pub size: EntityRule,
    /// The Color rule.
    pub color: EntityRule,
}

impl RuleGroup {
    /// The rule on entity attribute `a`.
    pub fn entity(&self, a: Attr) -> EntityRule {
        match a {
            Attr::Type => self.ty,
            Attr::Size => self.size,
            Attr::Color => self.color,
        }
    }

    /// Uniform choice of entry, then parameter, per family, rejected until the pruned ranges are
    /// valid — the same distribution as the originals' whole-tree rejection (validity factorises
    /// per family). Returns the group and the pruned ranges, or `None` if a family has no valid rule.
    pub fn sample(orig: &Ranges, rng: &mut Rng) -> Option<(RuleGroup, Ranges)> {
        let mut pruned = *orig;
        let np = sample_valid(rng, |rng| {
            let sign_2 = |rng: &mut Rng| [-2, -1, 1, 2][rng.below(4)];
            let sign_1 = |rng: &mut Rng| [-1, 1][rng.below(2)];
            let rule = match rng.below(7) {
                0 => NpRule::ProgressionNumber(sign_2(rng)),
                1 => NpRule::ProgressionPosition(sign_2(rng)),
                2 => NpRule::ArithmeticNumber(sign_1(rng)),
                3 => NpRule::ArithmeticPosition(sign_1(rng)),
                4 => NpRule::DistributeThreeNumber,
                5 => NpRule::DistributeThreePosition,
                _ => NpRule::Constant,
            };
            rule.prune(orig.number).map(|r| (rule, r))
        })?;
        pruned.number = np.1;
        let mut entity = |attr: Attr, rng: &mut Rng| {
            let (rule, r) = sample_valid(rng, |rng| {
                let entries = if attr == Attr::Type { 3 } else { 4 };
                let rule = match rng.below(entries) {
                    0 => EntityRule::Progression([-2, -1, 1, 2][rng.below(4)]),
                    1 => EntityRule::DistributeThree,
                    2 => EntityRule::Constant,
                    _ => EntityRule::Arithmetic([-1, 1][rng.below(2)]),
                };
                rule.prune(attr, orig.attr(attr)).map(|r| (rule, r))
            })?;
            *pruned.attr_mut(attr) = r;
            Some(rule)
        };
        let ty = entity(Attr::Type, rng)?;
        let size = entity(Attr::Size, rng)?;
        let color = entity(Attr::Color, rng)?;
        Some((
            RuleGroup {
                np: np.0,
                ty,
                size,
                color,
            },
            pruned,
        ))
    }
}

/// Rejection sampling with a cap (the originals loop forever).
fn sample_valid<T>(rng: &mut Rng, mut draw: impl FnMut(&mut Rng) -> Option<T>) -> Option<T> {
    (0..1000).find_map(|_| draw(rng))
}

/// Why a row could not be built; the problem is then re-drawn.
#[derive(Debug)]
pub struct Stuck;

/// Per-problem rule state: the Distribute_Three rows, fixed at row 1.
#[derive(Debug, Clone, Default)]
pub struct RuleState {
    /// Number levels per row (D3 Number).
    pub d3_number: Option<[[i32; 3]; 3]>,
    /// Slot sets per row (D3 Position).
    pub d3_position: Option<[[Vec<u8>; 3]; 3]>,
    /// Levels per row for Type, Size, Color (D3 entity rules).
    pub d3_entity: [Option<[[i32; 3]; 3]>; 3],
}

/// The three rows of a Distribute_Three rule from row 1's values `(a, b, c)`.
fn d3_rows<T: Clone>(a: T, b: T, c: T, rng: &mut Rng) -> [[T; 3]; 3] {
    let r1 = [a.clone(), b.clone(), c.clone()];
    let bca = [b.clone(), c.clone(), a.clone()];
    let cab = [c, a, b];
    if rng.below(2) == 0 {
        [r1, bca, cab]
    } else {
        [r1, cab, bca]
    }
}

fn attr_index(a: Attr) -> usize {
    a as usize
}

/// Context of one component while building rows.
pub struct Component {
    /// The component's four rules.
    pub rules: RuleGroup,
    /// The configuration's (preset-restricted) ranges before pruning.
    pub orig: Ranges,
    /// Ranges after the rules' pruning: what panels are sampled from.
    pub pruned: Ranges,
    /// Slots of the component's layout: the most entities it can hold.
    pub n_slots: usize,
    /// The Distribute_Three rows drawn at row 1, reused by rows 2 and 3.
    pub state: RuleState,
}

impl Component {
    /// A fresh column-1 layout: Number, positions and entities from the pruned ranges.
    pub fn sample_start(&self, uniform: bool, rng: &mut Rng) -> Layout {
        let count = self.pruned.number.sample(rng) as usize + 1;
        self.fresh(count, uniform, rng)
    }

    fn fresh(&self, count: usize, uniform: bool, rng: &mut Rng) -> Layout {
        let slots = super::grammar::choose_slots(self.n_slots, count, rng);
        let template = self.pruned.sample_entity(0, rng);
        Layout::regenerate(&template, &slots, uniform, &self.pruned, rng)
    }

    /// Same template rules as the originals: copies of `reference`'s first entity in new random slots.
    fn regenerate(&self, reference: &Layout, count: usize, rng: &mut Rng) -> Layout {
        let slots = super::grammar::choose_slots(self.n_slots, count, rng);
        Layout::regenerate(
            &reference.entities[0],
            &slots,
            reference.uniform,
            &self.pruned,
            rng,
        )
    }

    fn regenerate_in(&self, reference: &Layout, slots: &[u8], rng: &mut Rng) -> Layout {
        Layout::regenerate(
            &reference.entities[0],
            slots,
            reference.uniform,
            &self.pruned,
            rng,
        )
    }

    /// Builds columns 2 and 3 of row `row` (0-based) from column 1, which some rules rewrite.
    pub fn build_row(
        &mut self,
        row: usize,
        c1: &mut Layout,
        rng: &mut Rng,
    ) -> Result<(Layout, Layout), Stuck> {
        let (mut c2, mut c3) = self.apply_np(row, c1, rng)?;
        for attr in Attr::ALL {
            self.apply_entity(attr, row, c1, &mut c2, &mut c3, rng)?;
        }
        Ok((c2, c3))
    }

    fn apply_np(
        &mut self,
        row: usize,
        c1: &mut Layout,
        rng: &mut Rng,
    ) -> Result<(Layout, Layout), Stuck> {
        let n = self.n_slots;
        Ok(match self.rules.np {
            NpRule::Constant => (c1.clone(), c1.clone()),
            NpRule::ProgressionNumber(v) => {
                let c2 = self.regenerate(c1, (c1.count() as i32 + v) as usize, rng);
                let c3 = self.regenerate(&c2, (c2.count() as i32 + v) as usize, rng);
                (c2, c3)
            }
            NpRule::ProgressionPosition(v) => {
                let shift = |l: &Layout| {
                    l.moved(
                        &l.entities
                            .iter()
                            .map(|e| shift_slot(e.slot, v, n))
                            .collect::<Vec<_>>(),
                    )
                };
                let c2 = shift(c1);
                let c3 = shift(&c2);
                (c2, c3)
            }
            NpRule::ArithmeticNumber(v) => {
                let (l1, o) = (c1.level(), self.orig.number);
                let range = if v > 0 {
                    Range::new(o.min, o.max - l1 - 1)
                } else {
                    Range::new(o.min, l1 - o.min - 1)
                };
                if range.is_empty() {
                    return Err(Stuck);
                }
                let c2 = self.regenerate(c1, range.sample(rng) as usize + 1, rng);
                let count3 = if v > 0 {
                    c1.count() + c2.count()
                } else {
                    c1.count() - c2.count()
                };
                let c3 = self.regenerate(&c2, count3, rng);
                (c2, c3)
            }
            NpRule::ArithmeticPosition(v) => {
                let a = c1.slot_set();
                let b = (0..500)
                    .map(|_| {
                        let mut s = super::grammar::choose_slots(
                            n,
                            self.pruned.number.sample(rng) as usize + 1,
                            rng,
                        );
                        s.sort_unstable();
                        s
                    })
                    .find(|b| {
                        if v > 0 {
                            !is_subset(b, &a)
                        } else {
                            !is_subset(&a, b)
                        }
                    })
                    .ok_or(Stuck)?;
                let c2 = self.regenerate_in(c1, &b, rng);
                let c3_slots = arithmetic_slots(&a, &b, v);
                let c3 = self.regenerate_in(&c2, &c3_slots, rng);
                (c2, c3)
            }
            NpRule::DistributeThreeNumber => {
                if row == 0 {
                    let a = c1.level();
                    let b = self
                        .pruned
                        .number
                        .sample_excluding(&[a], rng)
                        .ok_or(Stuck)?;
                    let c = self
                        .pruned
                        .number
                        .sample_excluding(&[a, b], rng)
                        .ok_or(Stuck)?;
                    self.state.d3_number = Some(d3_rows(a, b, c, rng));
                }
                let levels = self.state.d3_number.ok_or(Stuck)?[row];
                if row > 0 {
                    *c1 = self.regenerate(c1, levels[0] as usize + 1, rng);
                }
                let c2 = self.regenerate(c1, levels[1] as usize + 1, rng);
                let c3 = self.regenerate(&c2, levels[2] as usize + 1, rng);
                (c2, c3)
            }
            NpRule::DistributeThreePosition => {
                if row == 0 {
                    let s0 = c1.slot_set();
                    let s1 =
                        new_slot_set(n, s0.len(), std::slice::from_ref(&s0), rng).ok_or(Stuck)?;
                    let s2 =
                        new_slot_set(n, s0.len(), &[s0.clone(), s1.clone()], rng).ok_or(Stuck)?;
                    self.state.d3_position = Some(d3_rows(s0, s1, s2, rng));
                }
                let sets = self.state.d3_position.clone().ok_or(Stuck)?[row].clone();
                if row > 0 {
                    *c1 = self.regenerate_in(c1, &sets[0], rng);
                }
                // Row 1's column 1 keeps its own position order; only the set matters.
                let c2 = c1.moved(&sets[1]);
                let c3 = c2.moved(&sets[2]);
                (c2, c3)
            }
        })
    }

    fn apply_entity(
        &mut self,
        attr: Attr,
        row: usize,
        c1: &mut Layout,
        c2: &mut Layout,
        c3: &mut Layout,
        rng: &mut Rng,
    ) -> Result<(), Stuck> {
        let first = |l: &Layout| l.entities[0].get(attr);
        match self.rules.entity(attr) {
            EntityRule::Constant => {}
            EntityRule::Progression(v) => {
                let l1 = first(c1);
                c1.set_all(attr, l1);
                c2.set_all(attr, l1 + v);
                c3.set_all(attr, l1 + 2 * v);
            }
            EntityRule::Arithmetic(v) => {
                let o = self.orig.attr(attr);
                let mut l1 = first(c1);
                let range_for = |l1: i32| match (attr, v > 0) {
                    (Attr::Size, true) => Range::new(o.min, o.max - l1 - 1),
                    (Attr::Size, false) => Range::new(o.min, l1 - o.min - 1),
                    (_, true) => Range::new(o.min, o.max - l1),
                    (_, false) => Range::new(o.min, l1),
                };
                // Colour level 0 (white) as column 2 makes + and − indistinguishable; the
                // originals only guard rows 1–2, we guard every row by re-drawing column 1.
                if attr == Attr::Color && range_for(l1) == Range::new(0, 0) {
                    let ok: Vec<i32> = (self.pruned.color.min..=self.pruned.color.max)
                        .filter(|&l| range_for(l).max > 0)
                        .collect();
                    if ok.is_empty() {
                        return Err(Stuck);
                    }
                    l1 = ok[rng.below(ok.len())];
                }
                let range = range_for(l1);
                if range.is_empty() {
                    return Err(Stuck);
                }
                let l2 = if attr == Attr::Color {
                    range.sample_excluding(&[0], rng).ok_or(Stuck)?
                } else {
                    range.sample(rng)
                };
                let l3 = match (attr, v > 0) {
                    (Attr::Size, true) => l1 + l2 + 1,
                    (Attr::Size, false) => l1 - l2 - 1,
                    (_, true) => l1 + l2,
                    (_, false) => l1 - l2,
                };
                c1.set_all(attr, l1);
                c2.set_all(attr, l2);
                c3.set_all(attr, l3);
            }
            EntityRule::DistributeThree => {
                let i = attr_index(attr);
                if row == 0 {
                    let r = self.pruned.attr(attr);
                    let a = r.sample(rng);
                    let b = r.sample_excluding(&[a], rng).ok_or(Stuck)?;
                    let c = r.sample_excluding(&[a, b], rng).ok_or(Stuck)?;
                    self.state.d3_entity[i] = Some(d3_rows(a, b, c, rng));
                }
                let levels = self.state.d3_entity[i].ok_or(Stuck)?[row];
                c1.set_all(attr, levels[0]);
                c2.set_all(attr, levels[1]);
                c3.set_all(attr, levels[2]);
            }
        }
        Ok(())
    }

    /// Whether `c3` completes row `row` whose first two panels are `c1`, `c2` under the
    /// Number/Position rule (§2.9).
    pub fn np_holds(&self, row: usize, c1: &Layout, c2: &Layout, c3: &Layout) -> bool {
        let n = self.n_slots;
        match self.rules.np {
            NpRule::Constant => c3.slot_set() == c2.slot_set() && c2.slot_set() == c1.slot_set(),
            NpRule::ProgressionNumber(_) => 2 * c2.level() == c1.level() + c3.level(),
            NpRule::ProgressionPosition(v) => {
                let shifted = |l: &Layout| {
                    let mut s: Vec<u8> = l
                        .entities
                        .iter()
                        .map(|e| shift_slot(e.slot, v, n))
                        .collect();
                    s.sort_unstable();
                    s
                };
                shifted(c1) == c2.slot_set() && shifted(c2) == c3.slot_set()
            }
            NpRule::ArithmeticNumber(v) => {
                if v > 0 {
                    c3.count() == c1.count() + c2.count()
                } else {
                    c3.count() + c2.count() == c1.count()
                }
            }
            NpRule::ArithmeticPosition(v) => {
                c3.slot_set() == arithmetic_slots(&c1.slot_set(), &c2.slot_set(), v)
            }
            NpRule::DistributeThreeNumber => self
                .state
                .d3_number
                .is_some_and(|d| d[row] == [c1.level(), c2.level(), c3.level()]),
            NpRule::DistributeThreePosition => self
                .state
                .d3_position
                .as_ref()
                .is_some_and(|d| d[row] == [c1.slot_set(), c2.slot_set(), c3.slot_set()]),
        }
    }

    /// Whether `c3` completes row `row` under the rule on `attr` (§2.9, including the originals'
    /// allowance for "Constant" on regenerated, non-uniform entities).
    pub fn entity_holds(
        &self,
        attr: Attr,
        row: usize,
        c1: &Layout,
        c2: &Layout,
        c3: &Layout,
    ) -> bool {
        let rule = self.rules.entity(attr);
        if rule == EntityRule::Constant && !c1.uniform {
            if self.rules.np.regenerates() || c1.count() != c2.count() || c2.count() != c3.count() {
                return true;
            }
            return c2
                .entities
                .iter()
                .zip(&c3.entities)
                .all(|(a, b)| a.get(attr) == b.get(attr))
                && c1
                    .entities
                    .iter()
                    .zip(&c2.entities)
                    .all(|(a, b)| a.get(attr) == b.get(attr));
        }
        let (Some(l1), Some(l2), Some(l3)) = (c1.shared(attr), c2.shared(attr), c3.shared(attr))
        else {
            return false;
        };
        match rule {
            EntityRule::Constant => l1 == l2 && l2 == l3,
            EntityRule::Progression(_) => 2 * l2 == l1 + l3 && l2 != l1,
            EntityRule::Arithmetic(v) => match (attr, v > 0) {
                (Attr::Size, true) => l3 == l1 + l2 + 1,
                (Attr::Size, false) => l3 == l1 - l2 - 1,
                (_, true) => l3 == l1 + l2,
                (_, false) => l3 == l1 - l2,
            },
            EntityRule::DistributeThree => {
                self.state.d3_entity[attr_index(attr)].is_some_and(|d| d[row] == [l1, l2, l3])
            }
        }
    }

    /// Number of this component's 4 rules that row `row` satisfies.
    pub fn score(&self, row: usize, c1: &Layout, c2: &Layout, c3: &Layout) -> usize {
        self.np_holds(row, c1, c2, c3) as usize
            + Attr::ALL
                .iter()
                .filter(|&&a| self.entity_holds(a, row, c1, c2, c3))
                .count()
    }
}

fn shift_slot(slot: u8, v: i32, n: usize) -> u8 {
    (slot as i32 + v).rem_euclid(n as i32) as u8
}

fn is_subset(a: &[u8], b: &[u8]) -> bool {
    a.iter().all(|x| b.contains(x))
}

/// `A ∪ B` (v > 0) or `A \ B` (v < 0), sorted.
fn arithmetic_slots(a: &[u8], b: &[u8], v: i32) -> Vec<u8> {
    let mut out: Vec<u8> = if v > 0 {
        a.iter().chain(b).copied().collect()
    } else {
        a.iter().filter(|x| !b.contains(x)).copied().collect()
    };
    out.sort_unstable();
    out.dedup();
    out
}
