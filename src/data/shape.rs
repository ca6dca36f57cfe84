//! The five shape tasks of the study, with one spelling everywhere.
//!
//! The study's folders say `pentagon` and `hexagon` but `circles`, `triangles`, `squares`;
//! [`Shape`] parses both spellings and always prints the plural one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A shape task: problems whose entities all have this Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// Type level 5.
    Circles,
    /// Type level 1.
    Triangles,
    /// Type level 2.
    Squares,
    /// Type level 3 (the study's folder: `pentagon`).
    Pentagons,
    /// Type level 4 (the study's folder: `hexagon`).
    Hexagons,
}

impl Shape {
    /// Every shape, in the order of the study's sharing-matrix figures.
    pub const ALL: [Shape; 5] = [
        Shape::Circles,
        Shape::Triangles,
        Shape::Pentagons,
        Shape::Hexagons,
        Shape::Squares,
    ];

    /// Our name, also the generator's preset and our dataset folder (`pentagons`).
    pub fn name(self) -> &'static str {
        match self {
            Shape::Circles => "circles",
            Shape::Triangles => "triangles",
            Shape::Squares => "squares",
            Shape::Pentagons => "pentagons",
            Shape::Hexagons => "hexagons",
        }
    }

    /// The study's folder name for this shape (`pentagon`, `hexagon`; the others plural).
    pub fn study_folder(self) -> &'static str {
        match self {
            Shape::Pentagons => "pentagon",
            Shape::Hexagons => "hexagon",
            other => other.name(),
        }
    }

    /// The RAVEN grammar's Type level of this shape.
    pub fn type_level(self) -> i32 {
        match self {
            Shape::Triangles => 1,
            Shape::Squares => 2,
            Shape::Pentagons => 3,
            Shape::Hexagons => 4,
            Shape::Circles => 5,
        }
    }

    /// The folder of this shape's problems under `tasks_dir`: our name, or the study's
    /// spelling when only that folder exists.
    pub fn dir_in(self, tasks_dir: &std::path::Path) -> std::path::PathBuf {
        let ours = tasks_dir.join(self.name());
        let study = tasks_dir.join(self.study_folder());
        if !ours.exists() && study.exists() {
            study
        } else {
            ours
        }
    }

    /// The shape a mask name or file path is about (`SCL_90/pentagon`, `squares_seed1`), if any.
    pub fn find_in(text: &str) -> Option<Shape> {
        let text = text.to_ascii_lowercase();
        Shape::ALL
            .into_iter()
            .find(|s| text.contains(s.study_folder().trim_end_matches('s')))
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Shape {
    type Err = Error;

    /// Accepts our names and the study's folder names, singular or plural, any case.
    fn from_str(s: &str) -> Result<Shape> {
        let lower = s.trim().to_ascii_lowercase();
        let singular = lower.strip_suffix('s').unwrap_or(&lower);
        Shape::ALL
            .into_iter()
            .find(|shape| shape.name().trim_end_matches('s') == singular)
            .ok_or_else(|| {
                Error::UnknownName(format!(
                    "unknown shape '{s}': expected one of circles, triangles, squares, pentagons, hexagons"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_parse_to_one_shape_that_prints_plural() {
        for (text, shape) in [
            ("pentagon", Shape::Pentagons),
            ("Pentagons", Shape::Pentagons),
            ("hexagon", Shape::Hexagons),
            ("circles", Shape::Circles),
            ("square", Shape::Squares),
        ] {
            assert_eq!(text.parse::<Shape>().unwrap(), shape);
        }
        assert_eq!(Shape::Hexagons.to_string(), "hexagons");
        assert_eq!(Shape::Hexagons.study_folder(), "hexagon");
        assert!("ellipse".parse::<Shape>().is_err());
    }

    #[test]
    fn find_in_reads_the_shape_from_study_and_our_names() {
        assert_eq!(Shape::find_in("SCL_90/pentagon"), Some(Shape::Pentagons));
        assert_eq!(Shape::find_in("squares_seed1"), Some(Shape::Squares));
        assert_eq!(Shape::find_in("originals"), None);
    }
}
