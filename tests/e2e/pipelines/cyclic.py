import eventflow as ef

a, b = ef.Dataset("a"), ef.Dataset("b")
p = ef.Pipeline("loop")
p.task(inputs=[a], outputs=[b], name="forth")(lambda ctx: None)
p.task(inputs=[b], outputs=[a], name="back")(lambda ctx: None)
app = ef.App([p])
