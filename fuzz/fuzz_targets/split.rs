//! Cutting fuzz input into the chunks a decoder is fed.

/// `data` cut at the fuzzer-chosen points `cuts` (clamped and sorted):
/// consecutive pieces that together are `data`.
pub fn pieces<'a>(data: &'a [u8], cuts: &[u16]) -> Vec<&'a [u8]> {
    let mut ends: Vec<usize> = cuts
        .iter()
        .map(|&c| usize::from(c).min(data.len()))
        .collect();
    ends.sort_unstable();
    ends.push(data.len());
    let mut start = 0;
    ends.into_iter()
        .map(|end| {
            let piece = &data[start..end];
            start = end;
            piece
        })
        .collect()
}
