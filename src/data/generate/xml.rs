//! The originals' XML annotation (§3.3): one line, attributes in ASCII order, levels not values,
//! per-entity silhouette masks, the rules and (I-RAVEN) which attributes each candidate changes.

use super::candidates::CandidateMode;
use super::grammar::{Layout, Panel};
use super::render::{real_bbox, silhouette_rle};
use super::SymbolicProblem;

fn slot_json(slot: &[f64; 4]) -> String {
    // Rust's `{}` prints the slots' literals as Python does (`1`, `0.5`, `0.33`).
    format!("[{}, {}, {}, {}]", slot[0], slot[1], slot[2], slot[3])
}

fn layout_xml(p: &SymbolicProblem, comp: usize, layout: &Layout, sizes: &[f64]) -> String {
    let spec = &p.config.layouts[comp];
    let positions = spec
        .slots
        .iter()
        .map(slot_json)
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = format!(
        "<Layout Number=\"{}\" Position=\"[{positions}]\" Uniformity=\"{}\" name=\"{}\">",
        layout.level(),
        p.uniformity[comp],
        spec.name
    );
    for e in &layout.entities {
        let slot = spec.slots[e.slot as usize];
        let rb = real_bbox(slot, e, sizes);
        out += &format!(
            "<Entity Angle=\"{}\" Color=\"{}\" Size=\"{}\" Type=\"{}\" bbox=\"{}\" mask=\"{}\" real_bbox=\"[{}, {}, {}, {}]\" />",
            e.angle, e.color, e.size, e.ty, slot_json(&slot), silhouette_rle(slot, e, sizes), rb[0], rb[1], rb[2], rb[3]
        );
    }
    out + "</Layout>"
}

fn panel_xml(p: &SymbolicProblem, panel: &Panel, sizes: &[f64]) -> String {
    let mut out = format!("<Panel><Struct name=\"{}\">", p.config.structure);
    for (comp, layout) in panel.iter().enumerate() {
        out += &format!(
            "<Component id=\"{comp}\" name=\"{}\">{}</Component>",
            p.config.layouts[comp].component,
            layout_xml(p, comp, layout, sizes)
        );
    }
    out + "</Struct></Panel>"
}

/// The XML text of a problem.
pub fn problem_xml(p: &SymbolicProblem, sizes: &[f64], mode: CandidateMode) -> String {
    let mut out = String::from("<Data><Panels>");
    for panel in p.context.iter().chain(&p.candidates) {
        out += &panel_xml(p, panel, sizes);
    }
    out += "</Panels><Rules>";
    for (comp, g) in p.rules.iter().enumerate() {
        let (np_name, np_attr) = g.np.names();
        out += &format!("<Rule_Group id=\"{comp}\"><Rule attr=\"{np_attr}\" name=\"{np_name}\" />");
        for a in super::Attr::ALL {
            out += &format!(
                "<Rule attr=\"{}\" name=\"{}\" />",
                a.name(),
                g.entity(a).name()
            );
        }
        out += "</Rule_Group>";
    }
    out += "</Rules>";
    if mode == CandidateMode::Iraven {
        out += "<Modified_attributes>";
        for (i, mods) in p.modified.iter().enumerate() {
            if mods.is_empty() {
                out += &format!("<Candidate id=\"{i}\" />");
            } else {
                out += &format!("<Candidate id=\"{i}\">");
                for m in mods {
                    out += &format!(
                        "<Attribute component_id=\"{}\" name=\"{}\" />",
                        m.comp,
                        m.attr.name()
                    );
                }
                out += "</Candidate>";
            }
        }
        out += "</Modified_attributes>";
    }
    out + "</Data>"
}
