import { describe, expect, it } from 'vitest';
import {
  findJobStateMachine,
  findUnsupported,
  localizeWaits,
  LOCAL_WAIT_RESOURCE,
  resolveDefinition,
  scaledRetryIntervals,
  UnsupportedDefinition,
  assertRunnableLocally,
} from '../../local/asl';
import { LocalNames, UnresolvableToken } from '../../local/template';
import { localFunctions } from '../../local/lambda';
import { definitionString, fixtureTemplate, oneTask } from './fixtures/template';

const workFn = { WorkFunction1A2B3C4D: { entry: 'functions/work.ts' } };
const known = (names: string[]) => (ref: string) => names.includes(ref);

describe('resolving the synthesized template to local names', () => {
  it('turns the DefinitionString Fn::Join into plain ASL with local function ARNs', () => {
    const template = fixtureTemplate({ definition: oneTask('WorkFunction1A2B3C4D'), functions: workFn });
    const definition = resolveDefinition(new LocalNames(template), 'JobStateMachine');
    expect(definition).toEqual({
      StartAt: 'Work',
      States: { Work: { Type: 'Task', Resource: 'arn:aws:lambda:us-east-1:000000000000:function:WorkFunction1A2B3C4D', End: true } },
    });
  });

  it('resolves function environments: bucket, table, secret, state machine and joined strings', () => {
    const template = fixtureTemplate({
      definition: oneTask('WorkFunction1A2B3C4D'),
      functions: {
        WorkFunction1A2B3C4D: {
          entry: 'functions/work.ts',
          timeout: 900,
          environment: {
            BATCHLINE_BUCKET: { Ref: 'DataBucketE3889A50' },
            BATCHLINE_TABLE: { Ref: 'DataTable3A6C6D8B' },
            BATCHLINE_API_KEY_SECRET: { Ref: 'ApiKeySecret5E0E1F3C' },
            MACHINE: { Ref: 'JobStateMachine' },
            BUCKET_ARN: { 'Fn::GetAtt': ['DataBucketE3889A50', 'Arn'] },
            INBOX: { 'Fn::Join': ['', ['s3://', { Ref: 'DataBucketE3889A50' }, '/inbox/']] },
            REGION: { 'Fn::Sub': '${AWS::Region}-${DataTable3A6C6D8B}' },
            LIMIT: 50,
          },
        },
      },
    });
    const [fn] = localFunctions(template);
    expect(fn).toMatchObject({
      logicalId: 'WorkFunction1A2B3C4D',
      name: 'WorkFunction1A2B3C4D',
      arn: 'arn:aws:lambda:us-east-1:000000000000:function:WorkFunction1A2B3C4D',
      entry: 'functions/work.ts',
      handlerExport: 'handler',
      timeoutSeconds: 900,
    });
    expect(fn!.environment).toEqual({
      BATCHLINE_BUCKET: 'databuckete3889a50',
      BATCHLINE_TABLE: 'DataTable3A6C6D8B',
      BATCHLINE_API_KEY_SECRET: 'arn:aws:secretsmanager:us-east-1:000000000000:secret:ApiKeySecret5E0E1F3C',
      MACHINE: 'arn:aws:states:us-east-1:000000000000:stateMachine:JobStateMachine',
      BUCKET_ARN: 'arn:aws:s3:::databuckete3889a50',
      INBOX: 's3://databuckete3889a50/inbox/',
      REGION: 'us-east-1-DataTable3A6C6D8B',
      LIMIT: '50',
    });
  });

  it('fails naming the token it cannot resolve', () => {
    const names = new LocalNames(fixtureTemplate({ definition: oneTask('X') }));
    expect(() => names.resolve({ 'Fn::ImportValue': 'OtherStack:Bucket' })).toThrow(new UnresolvableToken('Fn::ImportValue cannot be resolved locally'));
    expect(() => names.resolve({ Ref: 'Missing' })).toThrow(new UnresolvableToken('the template has no resource "Missing"'));
  });

  it('finds the job state machine among several by its RegisterJob start', () => {
    const template = fixtureTemplate({
      definition: { StartAt: 'RegisterJob', States: { RegisterJob: { Type: 'Succeed' } } },
      resources: {
        OtherMachine: {
          Type: 'AWS::StepFunctions::StateMachine',
          Properties: { DefinitionString: definitionString({ StartAt: 'Other', States: { Other: { Type: 'Succeed' } } }) },
        },
      },
    });
    expect(findJobStateMachine(template)).toBe('JobStateMachine');
  });
});

describe('refusing what the local engine cannot run', () => {
  it('accepts Lambda tasks, direct or through lambda:invoke with a fixed FunctionName', () => {
    const definition = {
      StartAt: 'A',
      States: {
        A: { Type: 'Task', Resource: 'arn:aws:lambda:us-east-1:000000000000:function:Work', Next: 'B' },
        B: {
          Type: 'Task',
          Resource: 'arn:aws:states:::lambda:invoke',
          Parameters: { FunctionName: 'arn:aws:lambda:us-east-1:000000000000:function:Work:$LATEST', 'Payload.$': '$' },
          End: true,
        },
      },
    };
    expect(findUnsupported(definition, known(['Work']))).toEqual([]);
  });

  it('lists every problem, nested states included, in one error', () => {
    const definition = {
      StartAt: 'Start',
      QueryLanguage: 'JSONata',
      States: {
        Start: { Type: 'Pass', Assign: { count: 1 }, Next: 'Items' },
        Items: {
          Type: 'Map',
          ItemReader: { Resource: 'arn:aws:states:::s3:getObject', Parameters: { Bucket: 'b', Key: 'k' } },
          ItemProcessor: {
            StartAt: 'Put',
            States: {
              Put: { Type: 'Task', Resource: 'arn:aws:states:::dynamodb:putItem', Next: 'Pick' },
              Pick: { Type: 'Task', Resource: 'arn:aws:states:::lambda:invoke', Parameters: { 'FunctionName.$': '$.fn' }, Next: 'Gone' },
              Gone: { Type: 'Task', Resource: 'arn:aws:lambda:us-east-1:000000000000:function:Gone', QueryLanguage: 'JSONata', End: true },
            },
          },
          End: true,
        },
      },
    };
    expect(() => assertRunnableLocally(definition, known([]))).toThrow(UnsupportedDefinition);
    expect(findUnsupported(definition, known([]))).toEqual([
      'the state machine uses JSONata (QueryLanguage JSONata)',
      'state Start sets variables (Assign)',
      'Map Items reads its items with ItemReader',
      'Task Put calls arn:aws:states:::dynamodb:putItem, which has no local handler',
      'Task Pick chooses its function at run time (FunctionName.$), which has no local handler',
      'state Gone (in Items) uses JSONata (QueryLanguage JSONata)',
      'Task Gone (in Items) calls function Gone, which is not in the template',
    ]);
  });

  it('refuses a state name used twice, since local overrides are keyed by name', () => {
    const definition = {
      StartAt: 'Work',
      States: {
        Work: { Type: 'Pass', Next: 'Each' },
        Each: { Type: 'Map', ItemProcessor: { StartAt: 'Work', States: { Work: { Type: 'Pass', End: true } } }, End: true },
      },
    };
    expect(findUnsupported(definition, known([]))).toEqual(['state name Work is used twice (Work and Work (in Each)); local overrides are keyed by name']);
  });
});

describe('making waits and retries follow the simulator clock', () => {
  const definition = {
    StartAt: 'Submit',
    States: {
      Submit: {
        Type: 'Task',
        Resource: 'arn:aws:lambda:us-east-1:000000000000:function:Work',
        Retry: [{ ErrorEquals: ['ApiRetryable'], IntervalSeconds: 30 }, { ErrorEquals: ['States.ALL'] }],
        Next: 'Wait',
      },
      Wait: { Type: 'Wait', SecondsPath: '$.waitSeconds', InputPath: '$', Next: 'Done' },
      Done: { Type: 'Succeed' },
    },
  };

  it('turns each Wait into a Task running the local wait, keeping its paths and transitions', () => {
    const { definition: local, waits } = localizeWaits(definition);
    expect(local.States.Wait).toEqual({ Type: 'Task', Resource: LOCAL_WAIT_RESOURCE, TimeoutSeconds: 2_000_000, InputPath: '$', Next: 'Done' });
    expect(waits).toEqual(new Map([['Wait', { SecondsPath: '$.waitSeconds' }]]));
    expect(definition.States.Wait.Type).toBe('Wait');
  });

  it('divides every retrier interval by the time scale (in ms, IntervalSeconds defaulting to 1)', () => {
    expect(scaledRetryIntervals(definition, 600)).toEqual({ Submit: [50, 1000 / 600] });
  });
});
