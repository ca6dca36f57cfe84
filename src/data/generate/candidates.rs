//! Answer candidates: I-RAVEN's attribute bisection tree (default, §2.8) and the original RAVEN
//! one-attribute distractors (§2.7). Both draw *distinct* values (the originals sometimes draw
//! with replacement); a problem whose candidates cannot all differ is re-drawn by the caller.

use super::grammar::{choose_slots, new_slot_set, Attr, Layout, Panel, Range};
use super::rules::{Component, EntityRule, NpRule, Stuck};
use crate::rng::Rng;

/// Which answer set to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CandidateMode {
    /// Balanced candidates: every attribute value occurs in half of them (no context-blind shortcut).
    Iraven,
    /// Original RAVEN: each distractor changes one attribute of the answer (the answer is modal).
    Raven,
}

/// What a distractor changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModAttr {
    /// How many entities the layout holds.
    Number,
    /// Which slots the entities occupy (same number).
    Position,
    /// One entity attribute (Type, Size or Color).
    Entity(Attr),
}

impl ModAttr {
    /// The attribute's name as RAVEN spells it (`Number`, `Position`, `Type`, `Size`, `Color`).
    pub fn name(self) -> &'static str {
        match self {
            ModAttr::Number => "Number",
            ModAttr::Position => "Position",
            ModAttr::Entity(a) => a.name(),
        }
    }
}

/// An attribute of one component that may differ between candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modifiable {
    /// Index of the component (layout) in the configuration.
    pub comp: usize,
    /// The attribute that may change.
    pub attr: ModAttr,
    /// One new value for all entities (true) or one per entity.
    pub shared_value: bool,
}

fn binom(n: usize, k: usize) -> u64 {
    if k > n {
        return 0;
    }
    (0..k).fold(1u64, |acc, i| acc * (n - i) as u64 / (i + 1) as u64)
}

/// The attributes whose rule is visible in the context (§2.7 step 1), so that changing them
/// makes a candidate wrong.
pub fn modifiable(comps: &[Component], answer: &Panel) -> Vec<Modifiable> {
    let mut out = Vec::new();
    for (i, (c, layout)) in comps.iter().zip(answer).enumerate() {
        let (n, slots) = (layout.count(), c.n_slots);
        let number_budget: u64 = (c.orig.number.min..=c.orig.number.max)
            .filter(|&k| k as usize + 1 != n)
            .map(|k| binom(slots, k as usize + 1))
            .sum();
        if number_budget > 0 {
            out.push(Modifiable {
                comp: i,
                attr: ModAttr::Number,
                shared_value: true,
            });
        }
        if !c.rules.np.on_number() && binom(slots, n) > 1 {
            out.push(Modifiable {
                comp: i,
                attr: ModAttr::Position,
                shared_value: true,
            });
        }
        for attr in Attr::ALL {
            let rule = c.rules.entity(attr);
            let constant_visible = layout.uniform
                || matches!(
                    c.rules.np,
                    NpRule::Constant
                        | NpRule::ProgressionPosition(_)
                        | NpRule::DistributeThreePosition
                );
            if c.orig.attr(attr).len() > 1 && (rule != EntityRule::Constant || constant_visible) {
                let shared_value = rule != EntityRule::Constant || layout.uniform;
                out.push(Modifiable {
                    comp: i,
                    attr: ModAttr::Entity(attr),
                    shared_value,
                });
            }
        }
    }
    out
}

/// A new value for one attribute, drawn from the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NewValue {
    /// New count: which answer entities are copied, and two unused slot sets (`b` is used by
    /// candidates whose Position was changed already).
    Number {
        select: Vec<usize>,
        slots_a: Vec<u8>,
        slots_b: Vec<u8>,
    },
    Position(Vec<u8>),
    Entity(Attr, Vec<i32>),
}

fn alternatives(comps: &[Component], answer: &Panel, m: Modifiable) -> usize {
    let layout = &answer[m.comp];
    let c = &comps[m.comp];
    match m.attr {
        ModAttr::Number => c.orig.number.len() as usize - 1,
        ModAttr::Position => (binom(c.n_slots, layout.count()) - 1) as usize,
        ModAttr::Entity(a) => c.orig.attr(a).len() as usize - 1,
    }
}

fn sample_new_value(
    comps: &[Component],
    answer: &Panel,
    m: Modifiable,
    used: &[NewValue],
    rng: &mut Rng,
) -> Option<NewValue> {
    let layout = &answer[m.comp];
    let c = &comps[m.comp];
    let n = layout.count();
    (0..100).find_map(|_| {
        let v = match m.attr {
            ModAttr::Number => {
                let used_counts: Vec<i32> = used
                    .iter()
                    .filter_map(|u| {
                        if let NewValue::Number { select, .. } = u {
                            Some(select.len() as i32 - 1)
                        } else {
                            None
                        }
                    })
                    .collect();
                let mut exclude = vec![layout.level()];
                if used_counts.len() + 2 < c.orig.number.len() as usize {
                    exclude.extend(used_counts);
                }
                let count = c.orig.number.sample_excluding(&exclude, rng)? as usize + 1;
                let select = if count <= n {
                    choose_slots(n, count, rng)
                        .into_iter()
                        .map(usize::from)
                        .collect()
                } else {
                    (0..count)
                        .map(|i| if i < n { i } else { rng.below(n) })
                        .collect()
                };
                let slots_a = new_slot_set(c.n_slots, count, &[], rng)?;
                let slots_b = new_slot_set(c.n_slots, count, std::slice::from_ref(&slots_a), rng)?;
                NewValue::Number {
                    select,
                    slots_a,
                    slots_b,
                }
            }
            ModAttr::Position => {
                NewValue::Position(new_slot_set(c.n_slots, n, &[layout.slot_set()], rng)?)
            }
            ModAttr::Entity(a) => {
                let range: Range = c.orig.attr(a);
                let values = if m.shared_value {
                    vec![range.sample_excluding(&[layout.entities[0].get(a)], rng)?]
                } else {
                    layout
                        .entities
                        .iter()
                        .map(|e| range.sample_excluding(&[e.get(a)], rng))
                        .collect::<Option<Vec<_>>>()?
                };
                NewValue::Entity(a, values)
            }
        };
        (!used.contains(&v)).then_some(v)
    })
}

fn apply(panel: &Panel, comp: usize, value: &NewValue, position_changed: bool) -> Panel {
    let mut p = panel.clone();
    let layout = &mut p[comp];
    match value {
        NewValue::Number {
            select,
            slots_a,
            slots_b,
        } => {
            let slots = if position_changed { slots_b } else { slots_a };
            let entities = select
                .iter()
                .zip(slots)
                .map(|(&j, &slot)| super::grammar::Entity {
                    slot,
                    ..layout.entities[j]
                })
                .collect();
            *layout = Layout {
                entities,
                uniform: layout.uniform,
            };
        }
        NewValue::Position(slots) => *layout = layout.moved(slots),
        NewValue::Entity(a, values) => {
            for (i, e) in layout.entities.iter_mut().enumerate() {
                e.set(*a, values[i % values.len()]);
            }
        }
    }
    p
}

/// I-RAVEN: 2³ combinations of one new value for each of 3 attributes (fallbacks for 2 and 1).
/// Returns the candidates (answer first) and, per candidate, which attributes differ.
pub fn iraven(
    comps: &[Component],
    answer: &Panel,
    rng: &mut Rng,
) -> Result<Vec<(Panel, Vec<Modifiable>)>, Stuck> {
    let all = modifiable(comps, answer);
    if all.is_empty() {
        return Err(Stuck);
    }
    let mut chosen: Vec<Modifiable> = rng
        .permutation(all.len())
        .into_iter()
        .take(3)
        .map(|i| all[i])
        .collect();
    if let Some(i) = chosen.iter().position(|m| m.attr == ModAttr::Number) {
        let m = chosen.remove(i);
        chosen.push(m);
    }
    let position_number = chosen.last().is_some_and(|m| m.attr == ModAttr::Number)
        && chosen
            .iter()
            .any(|m| m.attr == ModAttr::Position && m.comp == chosen[chosen.len() - 1].comp);
    let mut cands: Vec<(Panel, Vec<Modifiable>)> = vec![(answer.clone(), vec![])];
    let changed_position = |mods: &[Modifiable], comp: usize| {
        mods.iter()
            .any(|m| m.attr == ModAttr::Position && m.comp == comp)
    };
    let branch = |cands: &mut Vec<(Panel, Vec<Modifiable>)>,
                  m: Modifiable,
                  values: usize,
                  only_answer: bool,
                  rng: &mut Rng|
     -> Result<(), Stuck> {
        let mut used = Vec::new();
        for _ in 0..values {
            used.push(sample_new_value(comps, answer, m, &used, rng).ok_or(Stuck)?);
        }
        let base: Vec<(Panel, Vec<Modifiable>)> = if only_answer {
            cands[..1].to_vec()
        } else {
            cands.clone()
        };
        for value in &used {
            for (panel, mods) in &base {
                let mut mods = mods.clone();
                let p = apply(panel, m.comp, value, changed_position(&mods, m.comp));
                mods.push(m);
                cands.push((p, mods));
            }
        }
        Ok(())
    };
    match chosen.len() {
        3 => {
            for m in chosen {
                branch(&mut cands, m, 1, false, rng)?;
            }
        }
        2 => {
            if !position_number && alternatives(comps, answer, chosen[1]) < 3 {
                chosen.swap(0, 1);
            }
            branch(&mut cands, chosen[0], 1, false, rng)?;
            if position_number {
                branch(&mut cands, chosen[1], 6, true, rng)?;
            } else {
                branch(&mut cands, chosen[1], 3, false, rng)?;
            }
        }
        _ => branch(&mut cands, chosen[0], 7, true, rng)?,
    }
    Ok(cands)
}

/// RAVEN: 7 distractors, each the answer with one modifiable attribute changed (entry chosen
/// uniformly, as the originals do). Number distractors re-draw slots and entities from scratch.
pub fn raven(
    comps: &[Component],
    answer: &Panel,
    rng: &mut Rng,
) -> Result<Vec<(Panel, Vec<Modifiable>)>, Stuck> {
    let entries = modifiable(comps, answer);
    if entries.is_empty() {
        return Err(Stuck);
    }
    let mut cands: Vec<(Panel, Vec<Modifiable>)> = vec![(answer.clone(), vec![])];
    while cands.len() < 8 {
        let found = (0..100).find_map(|_| {
            let m = entries[rng.below(entries.len())];
            let p = raven_distractor(comps, answer, m, rng)?;
            (!cands.iter().any(|(c, _)| same_picture(c, &p))).then_some((p, vec![m]))
        });
        cands.push(found.ok_or(Stuck)?);
    }
    Ok(cands)
}

fn raven_distractor(
    comps: &[Component],
    answer: &Panel,
    m: Modifiable,
    rng: &mut Rng,
) -> Option<Panel> {
    let c = &comps[m.comp];
    let layout = &answer[m.comp];
    let mut p = answer.clone();
    p[m.comp] = match m.attr {
        ModAttr::Number => {
            let count = c.orig.number.sample_excluding(&[layout.level()], rng)? as usize + 1;
            let slots = choose_slots(c.n_slots, count, rng);
            let template = c.pruned.sample_entity(0, rng);
            Layout::regenerate(&template, &slots, layout.uniform, &c.pruned, rng)
        }
        ModAttr::Position => layout.moved(&new_slot_set(
            c.n_slots,
            layout.count(),
            &[layout.slot_set()],
            rng,
        )?),
        ModAttr::Entity(a) => {
            let mut l = layout.clone();
            for e in &mut l.entities {
                let v = c.orig.attr(a).sample_excluding(&[e.get(a)], rng)?;
                e.set(a, v);
            }
            l
        }
    };
    Some(p)
}

/// Symbolic identity: the same entities in the same slots in every component.
pub fn same_picture(a: &Panel, b: &Panel) -> bool {
    a.iter().zip(b).all(|(x, y)| x.key() == y.key())
}
