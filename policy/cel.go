package policy

import (
	"fmt"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
)

// celCostLimit bounds the work one evaluation of a when: expression may do,
// so that an expensive expression cannot stall ingress; past it the
// expression is false.
const celCostLimit = 100_000

// celEnv declares the one variable a when: expression sees: event, the
// normalized event as a dynamic map (field names as in its JSON).
var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("event", cel.MapType(cel.StringType, cel.DynType)),
		cel.CrossTypeNumericComparisons(true),
	)
})

// program is a compiled when: expression.
type program struct {
	prg cel.Program
}

// whenError is a when: expression that does not compile; line is the line
// of the expression (from 1) its first problem is on.
type whenError struct {
	msg  string
	line int
}

func (e *whenError) Error() string { return e.msg }

// compileWhen compiles a when: expression. Its errors say what is wrong and
// where in the expression (line and column when it spans several lines).
func compileWhen(expr string) (*program, error) {
	env, err := celEnv()
	if err != nil {
		return nil, err // a bug: the environment is fixed
	}
	if strings.TrimSpace(expr) == "" {
		return nil, fmt.Errorf("is empty: write a CEL expression or leave when: out")
	}
	ast, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		multiline := strings.Contains(strings.TrimSpace(expr), "\n")
		var msgs []string
		first := 0
		for _, e := range iss.Errors() {
			loc := fmt.Sprintf("column %d", e.Location.Column()+1)
			if multiline {
				loc = fmt.Sprintf("line %d of the expression, column %d", e.Location.Line(), e.Location.Column()+1)
			}
			if first == 0 {
				first = e.Location.Line()
			}
			msgs = append(msgs, fmt.Sprintf("%s: %s", loc, e.Message))
		}
		return nil, &whenError{msg: strings.Join(msgs, "; "), line: first}
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) && !t.IsExactType(cel.DynType) {
		return nil, fmt.Errorf("must be true or false, but its type is %s", cel.FormatCELType(t))
	}
	prg, err := env.Program(ast, cel.CostLimit(celCostLimit))
	if err != nil {
		return nil, err
	}
	return &program{prg: prg}, nil
}

// eval reports whether the expression holds for the event map. A missing
// key, a type mismatch or an exceeded cost limit are errors in CEL; here
// they make the condition false, so a route never fails an event.
func (p *program) eval(event map[string]any) bool {
	out, _, err := p.prg.Eval(map[string]any{"event": event})
	if err != nil {
		return false
	}
	return out == types.True
}
