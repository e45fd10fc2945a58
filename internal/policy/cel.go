package policy

import (
	"fmt"
	"strconv"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
)

// celCostLimit bounds one rule's run time. A rule sees at most one payload
// under the token size cap (8 KiB by default); 100,000 cost units is a few
// comprehensions over every element of such a payload, and a few
// milliseconds at worst, so a hostile token cannot make a rule spin.
const celCostLimit = 100_000

// celEnv is built once: declaring the environment is costly and it is the
// same for every rule of every policy.
var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("claims", cel.MapType(cel.StringType, cel.DynType)),
		cel.CrossTypeNumericComparisons(true),
		ext.Strings(),
	)
})

// compileRule compiles and type-checks a rule; the error says what to fix.
func compileRule(expr string) (cel.Program, error) {
	env, err := celEnv()
	if err != nil {
		return nil, fmt.Errorf("CEL environment: %w", err)
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("does not compile: %v", iss.Err())
	}
	if !ast.OutputType().IsExactType(types.BoolType) {
		return nil, fmt.Errorf("must evaluate to bool, not %s; compare explicitly, e.g. \"claims.email_verified == true\"", ast.OutputType())
	}
	prg, err := env.Program(ast, cel.CostLimit(celCostLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fmt.Errorf("cannot be planned: %v", err)
	}
	return prg, nil
}

// eval runs a rule: false, a non-bool, a run-time error (a missing key, a
// type error) or the cost limit all deny with rule_failed.
func (r *rule) eval(claims any, i int, tr *Trace) (denial, bool) {
	out, _, err := r.program.Eval(map[string]any{"claims": claims})
	name := ""
	if tr != nil {
		name = "rule[" + strconv.Itoa(i) + "]"
	}
	if err != nil {
		if tr != nil {
			tr.add(name, false, "%s: error: %v", r.expression, err)
		}
		return r.failed, false
	}
	if b, ok := out.Value().(bool); !ok || !b {
		if tr != nil {
			tr.add(name, false, "%s: false", r.expression)
		}
		return r.failed, false
	}
	if tr != nil {
		tr.add(name, true, "%s: true", r.expression)
	}
	return denial{}, true
}
