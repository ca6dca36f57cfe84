//! The RAVEN scene grammar: constants, the 7 configurations with their literal slot lists, and
//! the symbolic panel (components → layout → entities) that rules, candidates, the solver and
//! the renderer all work on (`../shared/specs/scl-and-raven.md` §2.1–§2.4).

use crate::rng::Rng;

/// Size values (scale of the slot radius), level 0..5.
pub const SIZE_VALUES: [f64; 6] = [0.4, 0.5, 0.6, 0.7, 0.8, 0.9];
/// Fill grey per colour level; 255 = white = outline only.
pub const COLOR_VALUES: [u8; 10] = [255, 224, 196, 168, 140, 112, 84, 56, 28, 0];
/// Rotation per angle level, degrees counter-clockwise.
pub const ANGLE_VALUES: [f64; 8] = [-135.0, -90.0, -45.0, 0.0, 45.0, 90.0, 135.0, 180.0];
/// Shape names per type level (0 is never drawn).
pub const TYPE_NAMES: [&str; 6] = [
    "none", "triangle", "square", "pentagon", "hexagon", "circle",
];
/// `meta_structure` bit order.
pub const META_STRUCTURE_FORMAT: [&str; 21] = [
    "Singleton",
    "Left_Right",
    "Up_Down",
    "Out_In",
    "Left",
    "Right",
    "Up",
    "Down",
    "Out",
    "In",
    "Grid",
    "Center_Single",
    "Distribute_Four",
    "Distribute_Nine",
    "Left_Center_Single",
    "Right_Center_Single",
    "Up_Center_Single",
    "Down_Center_Single",
    "Out_Center_Single",
    "In_Center_Single",
    "In_Distribute_Four",
];

/// An inclusive range of levels; empty when `min > max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Range {
    /// Lowest allowed level (inclusive).
    pub min: i32,
    /// Highest allowed level (inclusive).
    pub max: i32,
}

impl Range {
    /// The levels `min..=max` (`const`, so the configuration tables can use it).
    pub const fn new(min: i32, max: i32) -> Self {
        Range { min, max }
    }
    /// Whether no level is allowed (`min > max`).
    pub fn is_empty(self) -> bool {
        self.min > self.max
    }
    /// Number of allowed levels (0 when empty).
    pub fn len(self) -> i32 {
        (self.max - self.min + 1).max(0)
    }
    /// Whether level `v` is allowed.
    pub fn contains(self, v: i32) -> bool {
        (self.min..=self.max).contains(&v)
    }
    /// The levels allowed by both ranges (possibly empty).
    pub fn intersect(self, other: Range) -> Range {
        Range::new(self.min.max(other.min), self.max.min(other.max))
    }
    /// Uniform level in the range (which must not be empty).
    pub fn sample(self, rng: &mut Rng) -> i32 {
        self.min + rng.below(self.len() as usize) as i32
    }
    /// Uniform level in the range other than those in `exclude`; `None` if none is left.
    pub fn sample_excluding(self, exclude: &[i32], rng: &mut Rng) -> Option<i32> {
        let left: Vec<i32> = (self.min..=self.max)
            .filter(|v| !exclude.contains(v))
            .collect();
        (!left.is_empty()).then(|| left[rng.below(left.len())])
    }
}

/// One layout of a configuration: its slots and its attribute constraints.
#[derive(Debug)]
pub struct LayoutSpec {
    /// Component name (`Grid`, `Left`, `Out`, …).
    pub component: &'static str,
    /// Layout name (`Center_Single`, `Distribute_Four`, …).
    pub name: &'static str,
    /// Slots `(y_center, x_center, height, width)` as panel fractions, in position-index order.
    pub slots: &'static [[f64; 4]],
    /// Number levels (count − 1).
    pub number: Range,
    /// Entity constraints before the preset's restrictions.
    pub size: Range,
    /// Color levels allowed before the preset's restrictions (the `Out` frame: white only).
    pub color: Range,
}

impl LayoutSpec {
    /// Number of slots, i.e. the most entities the layout can hold.
    pub fn n_slots(&self) -> usize {
        self.slots.len()
    }
}

/// One of the 7 configurations.
#[derive(Debug)]
pub struct ConfigSpec {
    /// Folder name, e.g. `center_single`.
    pub folder: &'static str,
    /// Structure node (`Singleton`, `Left_Right`, `Up_Down`, `Out_In`).
    pub structure: &'static str,
    /// Its components' layouts, in the originals' order (`Out` before `In`, `Left` before
    /// `Right`, `Up` before `Down`).
    pub layouts: &'static [LayoutSpec],
}

const ALL_SIZES: Range = Range::new(0, 5);
const ALL_COLORS: Range = Range::new(0, 9);
const CENTER: &[[f64; 4]] = &[[0.5, 0.5, 1.0, 1.0]];
const FOUR: &[[f64; 4]] = &[
    [0.25, 0.25, 0.5, 0.5],
    [0.25, 0.75, 0.5, 0.5],
    [0.75, 0.25, 0.5, 0.5],
    [0.75, 0.75, 0.5, 0.5],
];
const NINE: &[[f64; 4]] = &[
    [0.16, 0.16, 0.33, 0.33],
    [0.16, 0.5, 0.33, 0.33],
    [0.16, 0.83, 0.33, 0.33],
    [0.5, 0.16, 0.33, 0.33],
    [0.5, 0.5, 0.33, 0.33],
    [0.5, 0.83, 0.33, 0.33],
    [0.83, 0.16, 0.33, 0.33],
    [0.83, 0.5, 0.33, 0.33],
    [0.83, 0.83, 0.33, 0.33],
];
const IN_FOUR: &[[f64; 4]] = &[
    [0.42, 0.42, 0.15, 0.15],
    [0.42, 0.58, 0.15, 0.15],
    [0.58, 0.42, 0.15, 0.15],
    [0.58, 0.58, 0.15, 0.15],
];

const fn single(
    component: &'static str,
    name: &'static str,
    slots: &'static [[f64; 4]],
) -> LayoutSpec {
    LayoutSpec {
        component,
        name,
        slots,
        number: Range::new(0, 0),
        size: ALL_SIZES,
        color: ALL_COLORS,
    }
}

const OUT: LayoutSpec = LayoutSpec {
    component: "Out",
    name: "Out_Center_Single",
    slots: CENTER,
    number: Range::new(0, 0),
    size: Range::new(3, 5),
    color: Range::new(0, 0),
};

/// The 7 configurations in the order of [`crate::data::CONFIGURATIONS`].
pub static CONFIG_SPECS: [ConfigSpec; 7] = [
    ConfigSpec {
        folder: "center_single",
        structure: "Singleton",
        layouts: &[single("Grid", "Center_Single", CENTER)],
    },
    ConfigSpec {
        folder: "distribute_four",
        structure: "Singleton",
        layouts: &[LayoutSpec {
            component: "Grid",
            name: "Distribute_Four",
            slots: FOUR,
            number: Range::new(0, 3),
            size: ALL_SIZES,
            color: ALL_COLORS,
        }],
    },
    ConfigSpec {
        folder: "distribute_nine",
        structure: "Singleton",
        layouts: &[LayoutSpec {
            component: "Grid",
            name: "Distribute_Nine",
            slots: NINE,
            number: Range::new(0, 8),
            size: ALL_SIZES,
            color: ALL_COLORS,
        }],
    },
    ConfigSpec {
        folder: "in_center_single_out_center_single",
        structure: "Out_In",
        layouts: &[
            OUT,
            LayoutSpec {
                component: "In",
                name: "In_Center_Single",
                slots: &[[0.5, 0.5, 0.33, 0.33]],
                number: Range::new(0, 0),
                size: ALL_SIZES,
                color: ALL_COLORS,
            },
        ],
    },
    ConfigSpec {
        folder: "in_distribute_four_out_center_single",
        structure: "Out_In",
        layouts: &[
            OUT,
            LayoutSpec {
                component: "In",
                name: "In_Distribute_Four",
                slots: IN_FOUR,
                number: Range::new(0, 3),
                size: Range::new(2, 5),
                color: ALL_COLORS,
            },
        ],
    },
    ConfigSpec {
        folder: "left_center_single_right_center_single",
        structure: "Left_Right",
        layouts: &[
            single("Left", "Left_Center_Single", &[[0.5, 0.25, 0.5, 0.5]]),
            single("Right", "Right_Center_Single", &[[0.5, 0.75, 0.5, 0.5]]),
        ],
    },
    ConfigSpec {
        folder: "up_center_single_down_center_single",
        structure: "Up_Down",
        layouts: &[
            single("Up", "Up_Center_Single", &[[0.25, 0.5, 0.5, 0.5]]),
            single("Down", "Down_Center_Single", &[[0.75, 0.5, 0.5, 0.5]]),
        ],
    },
];

impl ConfigSpec {
    /// The configuration with folder name `name`.
    pub fn by_name(name: &str) -> Option<&'static ConfigSpec> {
        CONFIG_SPECS.iter().find(|c| c.folder == name)
    }

    /// The `structure` tokens, pre-order as the originals serialise the tree.
    pub fn structure_tokens(&self) -> Vec<String> {
        let mut t = vec!["Scene".to_string(), self.structure.to_string()];
        for l in self.layouts {
            t.extend([l.component, l.name, "/", "/"].map(String::from));
        }
        t.extend(["/", "/"].map(String::from));
        t
    }

    /// The 21-bit one-hot of node names.
    pub fn meta_structure(&self) -> Vec<u8> {
        let names: Vec<&str> = std::iter::once(self.structure)
            .chain(self.layouts.iter().flat_map(|l| [l.component, l.name]))
            .collect();
        META_STRUCTURE_FORMAT
            .iter()
            .map(|f| names.contains(f) as u8)
            .collect()
    }
}

/// One shape in a slot; all attributes are levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entity {
    /// Index into the layout's [`LayoutSpec::slots`].
    pub slot: u8,
    /// Type level: 1 triangle, 2 square, 3 pentagon, 4 hexagon, 5 circle ([`TYPE_NAMES`]).
    pub ty: i32,
    /// Size level, an index into the preset's size values ([`SIZE_VALUES`], 0..5, by default).
    pub size: i32,
    /// Color level 0 (white) … 9 (black), an index into [`COLOR_VALUES`].
    pub color: i32,
    /// Angle level 0..7, an index into [`ANGLE_VALUES`].
    pub angle: i32,
}

/// The entity attributes that rules act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attr {
    /// The shape ([`Entity::ty`]).
    Type,
    /// The scale ([`Entity::size`]).
    Size,
    /// The fill grey ([`Entity::color`]).
    Color,
}

impl Attr {
    /// The three attributes in RAVEN's order: Type, Size, Color.
    pub const ALL: [Attr; 3] = [Attr::Type, Attr::Size, Attr::Color];
    /// The attribute's name as RAVEN spells it (`Type`, `Size`, `Color`).
    pub fn name(self) -> &'static str {
        match self {
            Attr::Type => "Type",
            Attr::Size => "Size",
            Attr::Color => "Color",
        }
    }
}

impl Entity {
    /// The level of attribute `a`.
    pub fn get(&self, a: Attr) -> i32 {
        match a {
            Attr::Type => self.ty,
            Attr::Size => self.size,
            Attr::Color => self.color,
        }
    }
    /// Sets attribute `a` to level `v` (not checked against any range).
    pub fn set(&mut self, a: Attr, v: i32) {
        match a {
            Attr::Type => self.ty = v,
            Attr::Size => self.size = v,
            Attr::Color => self.color = v,
        }
    }
}

/// Ranges of the layout and entity attributes of one component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ranges {
    /// Number levels (count − 1).
    pub number: Range,
    /// Type levels (1 triangle … 5 circle).
    pub ty: Range,
    /// Size levels (indices into the preset's size values).
    pub size: Range,
    /// Color levels (0 white … 9 black).
    pub color: Range,
}

impl Ranges {
    /// The range of entity attribute `a`.
    pub fn attr(&self, a: Attr) -> Range {
        match a {
            Attr::Type => self.ty,
            Attr::Size => self.size,
            Attr::Color => self.color,
        }
    }
    /// The range of entity attribute `a`, to narrow it in place.
    pub fn attr_mut(&mut self, a: Attr) -> &mut Range {
        match a {
            Attr::Type => &mut self.ty,
            Attr::Size => &mut self.size,
            Attr::Color => &mut self.color,
        }
    }
    /// Whether every range allows at least one level.
    pub fn is_valid(&self) -> bool {
        !(self.number.is_empty()
            || self.ty.is_empty()
            || self.size.is_empty()
            || self.color.is_empty())
    }

    /// Uniform Type/Size/Color/Angle in these ranges.
    pub fn sample_entity(&self, slot: u8, rng: &mut Rng) -> Entity {
        Entity {
            slot,
            ty: self.ty.sample(rng),
            size: self.size.sample(rng),
            color: self.color.sample(rng),
            angle: rng.below(8) as i32,
        }
    }
}

/// One component of one panel: which slots are filled, by what, and whether entities are copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Entities in position order (`entity.slot` is the slot index).
    pub entities: Vec<Entity>,
    /// Uniformity: all entities share Type/Size/Color/Angle.
    pub uniform: bool,
}

impl Layout {
    /// Number of entities.
    pub fn count(&self) -> usize {
        self.entities.len()
    }
    /// Number level (count − 1).
    pub fn level(&self) -> i32 {
        self.entities.len() as i32 - 1
    }
    /// Occupied slots as a sorted set.
    pub fn slot_set(&self) -> Vec<u8> {
        let mut s: Vec<u8> = self.entities.iter().map(|e| e.slot).collect();
        s.sort_unstable();
        s
    }
    /// Entities sorted by slot: equal keys ⇔ identical pictures (before rendering collisions).
    pub fn key(&self) -> Vec<Entity> {
        let mut e = self.entities.clone();
        e.sort();
        e
    }
    /// Sets attribute `a` of every entity.
    pub fn set_all(&mut self, a: Attr, v: i32) {
        self.entities.iter_mut().for_each(|e| e.set(a, v));
    }
    /// The value every entity shares, if they all share one.
    pub fn shared(&self, a: Attr) -> Option<i32> {
        let v = self.entities.first()?.get(a);
        self.entities.iter().all(|e| e.get(a) == v).then_some(v)
    }

    /// New entities in `slots`: copies of `template`, each re-sampled when the layout is not uniform.
    pub fn regenerate(
        template: &Entity,
        slots: &[u8],
        uniform: bool,
        ranges: &Ranges,
        rng: &mut Rng,
    ) -> Layout {
        let entities = slots
            .iter()
            .map(|&slot| {
                if uniform {
                    Entity { slot, ..*template }
                } else {
                    ranges.sample_entity(slot, rng)
                }
            })
            .collect();
        Layout { entities, uniform }
    }

    /// The same entities moved to `slots` (same length), keeping their attributes.
    pub fn moved(&self, slots: &[u8]) -> Layout {
        let entities = self
            .entities
            .iter()
            .zip(slots)
            .map(|(e, &slot)| Entity { slot, ..*e })
            .collect();
        Layout {
            entities,
            uniform: self.uniform,
        }
    }
}

/// A panel: one layout per component of the configuration.
pub type Panel = Vec<Layout>;

/// `count` distinct slots of `0..n`, in random order.
pub fn choose_slots(n: usize, count: usize, rng: &mut Rng) -> Vec<u8> {
    rng.permutation(n)
        .into_iter()
        .take(count)
        .map(|s| s as u8)
        .collect()
}

/// A slot set of size `count` (sorted) different from every set in `avoid`; `None` after many tries.
pub fn new_slot_set(n: usize, count: usize, avoid: &[Vec<u8>], rng: &mut Rng) -> Option<Vec<u8>> {
    (0..200).find_map(|_| {
        let mut s = choose_slots(n, count, rng);
        s.sort_unstable();
        (!avoid.contains(&s)).then_some(s)
    })
}
