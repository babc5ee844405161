use fondo::{Error, Pool};

fn square(x: u64) -> u64 {
    x * x
}
fn pow(b: u64, e: u32) -> u64 {
    b.pow(e)
}
fn boom(x: u32) -> u32 {
    if x == 3 {
        panic!("three!");
    }
    x
}
fn die(x: u32) -> u32 {
    if x == 5 {
        std::process::abort();
    }
    x
}

#[test]
fn smoke() {
    let pool = Pool::processes(2).unwrap();
    let pids = pool.pids();
    assert!(pids.iter().all(|&p| p != std::process::id() && p != 0));
    assert_eq!(
        pool.map(square, 0..10).unwrap(),
        (0..10).map(|x| x * x).collect::<Vec<_>>()
    );
    assert_eq!(pool.starmap(pow, [(2, 10), (3, 4)]).unwrap(), [1024, 81]);
    assert_eq!(pool.apply(pow, (2, 3)).unwrap(), 8);
    let r: Vec<_> = pool.imap(boom, 0..6).collect();
    assert!(matches!(&r[3], Err(Error::Panicked { message, .. }) if message.contains("three")));
    assert_eq!(r[5].as_ref().unwrap(), &5);
    let r: Vec<_> = pool.imap(die, 0..10).collect();
    eprintln!("{r:?}");
    assert!(matches!(&r[5], Err(Error::WorkerDied { .. })));
    assert_eq!(r.iter().filter(|r| r.is_ok()).count(), 9);
    let big = pool.map(square, 0..100_000).unwrap();
    assert_eq!(big.len(), 100_000);
    let child = fondo::spawn(pow, (2, 10)).unwrap();
    assert_ne!(child.pid(), std::process::id());
    assert_eq!(child.join().unwrap(), 1024);
}
