;; A bare core module with several exports and the `platform` import set: `answer` (42), `sum`
;; of two i32, `mul` of two i64, `now` (platform.now, ms since the UNIX epoch), `spin` (loops
;; for ever: the typed timeout) and `trap` (unreachable).
(module
  (import "platform" "now" (func $now (result f64)))
  (func (export "answer") (result i32) i32.const 42)
  (func (export "sum") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
  (func (export "mul") (param i64 i64) (result i64) local.get 0 local.get 1 i64.mul)
  (func (export "now") (result f64) call $now)
  (func (export "spin") (loop $again br $again))
  (func (export "trap") unreachable))
