use anyhow::Result;

fn main() -> Result<()> {
    let d = sgdd::DeviceChoice::Auto.resolve()?;
    println!("{d:?}");
    Ok(())
}
